// Package monitor holds the arithmetic of clockd's remote clock monitor:
// the offset estimate of a four-timestamp exchange and the majority
// verdict on the local clock's health.
//
// The exchange: the prober reads its physical clock (t1) and sends a
// probe; the peer reads its clock on receipt (t2) and when replying (t3);
// the prober reads its clock on receipt of the reply (t4). With θ the
// peer's clock minus the prober's and non-negative one-way delays, θ lies
// in [t3-t4, t2-t1]: the estimate is the middle of that interval and its
// half-width, RTT/2, bounds the error, plus an allowance for the
// clocks' reading error.
//
// The verdict: a peer is far when its offset exceeds the threshold even
// after giving it the benefit of its uncertainty. The local clock is
// unhealthy when a strict majority of the reachable peers are far. A
// node whose clock alone is skewed sees every peer far and flags itself;
// a healthy node sees only the skewed node far, a minority, once there are
// at least three nodes. With two nodes a skew makes both unhealthy; with
// no reachable peer the verdict is healthy (nothing to judge against).
package monitor
