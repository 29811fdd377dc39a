// Package kvclient is the Go client of Pleiades' KV service: raftd's client
// protocol (wire.ProtoKV, messages in shared/proto/kvpb) over the bus.
//
// # Use
//
//	c, err := kvclient.New(ctx, kvclient.Config{
//		Addrs:    []string{"127.0.0.1:7402", "127.0.0.1:7412", "127.0.0.1:7422"},
//		CertsDir: "data/certs",
//	})
//	if err != nil { ... }
//	defer c.Close(context.Background())
//
//	ts, err := c.Put(ctx, []byte("greeting"), []byte("hello"))
//	v, found, err := c.Get(ctx, []byte("greeting"))           // v.Value, v.Timestamp
//	v, found, err = c.Get(ctx, []byte("greeting"), kvclient.WithConsistency(kvclient.Stale))
//	res, err := c.CompareAndSwap(ctx, kvclient.CAS{Key: k, Expected: old, NewValue: nu})
//	br, err := c.Batch(ctx, kvclient.NewBatch().Put(k1, v1).Delete(k2))
//
//	it := c.Scan(ctx, []byte("a"), []byte("b"), kvclient.ScanOptions{Limit: 100})
//	for it.Next() {
//		kv := it.KV() // kv.Key, kv.Value, kv.Timestamp
//	}
//	if err := it.Err(); err != nil { ... }
//
// Values come back with the HLC timestamp (shared/hlc) of the write that
// made them; writes return theirs.
//
// # Routing and retries
//
// Any raftd serves any request: a node that does not lead the key's range
// forwards it. The client avoids that hop when it can. It loads range
// descriptors and known leaders from the Descriptors method (lazily, on a
// key whose range or leader it does not know, at most once per
// Config.DescriptorsEvery; a stale read of any node's copy of the meta
// range, as are the clock readings below, while Client.Descriptors is
// linearizable unless asked otherwise) and sends point requests (Get, Put, Delete,
// CompareAndSwap, Batch) straight to the leader with Header.no_forward set.
// A NotLeader answer's hint (the leader's raftd address) updates the cache
// and is followed at once, up to Config.MaxHintHops in a row. Point
// requests also carry the cached range id and generation
// (Header.range_id): a node that knows the range split or changed since
// answers RangeKeyMismatch (FailedPrecondition, reason
// kvpb.ReasonRangeKeyMismatch) with the current descriptors, which replace
// the stale cache entries (no reload of every descriptor); the request goes
// again at once, within the same MaxHintHops. AdminSplit, ChangeReplicas
// and TransferLeader administer ranges (raftd's, over the bus). When it knows
// no leader, or the server lacks Descriptors, it sends to the configured
// addresses round robin and lets the node forward. Stale reads (Get and
// Scan with Stale) need no leader: they go to the first configured address
// that is not suspect, so list the nearest node first; spreading clients
// over the nodes is then a matter of giving them different first
// addresses. Bounded-staleness reads (MaxStaleness, ScanOptions.
// MaxStaleness) go the same way, but are exact: the node's replica serves
// them at its closed timestamp, where no write can still land, and the
// value is the key's value at that timestamp (ServedAt, Iterator.ReadAt);
// a node that cannot serve one sends it to the range's leader. Stale reads
// are cheaper (no timestamp to wait for) but may miss any recent write and
// name no timestamp; prefer MaxStaleness.
//
// Unavailable, NotLeader without a hint and an attempt that times out are
// retried on another node after a jittered exponential backoff
// (Config.RetryBackoffMin..Max) until the operation succeeds,
// Config.MaxAttempts is reached or the caller's context ends; other errors
// (InvalidArgument for a bad key, a Batch spanning ranges,
// FailedPrecondition...) return at once. An operation that every
// configured node refuses as "cluster not initialized" also returns at
// once, with an error matching ErrNotInitialized. A node where nothing
// listens (the bus hears the dial's port unreachable: bus.ReasonNoListener)
// becomes suspect and the next attempt goes elsewhere; once every
// configured address (or the one a call is pinned to) had nothing
// listening, the operation returns at once with ErrNoListener instead of
// retrying until its deadline. A failed TLS handshake
// (bus.ErrUnauthenticated: certificates of another cluster CA) is never
// retried. Keys and values over the KV's limits (kvpb.MaxKeyBytes,
// kvpb.MaxValueBytes) and requests over the bus frame are refused before
// anything is sent, with InvalidArgument.
//
// Every attempt's lesson is kept, the last one's included: a NotLeader
// hint updates the leader cache even when MaxAttempts ends the operation,
// so the next one goes to the new leader. Errors wrap the bus error, so
// errors.Is(err, bus.ErrInvalidArgument) and friends work, and a context
// that ended wraps ctx.Err() as well.
//
// # Failover
//
// A node that died without closing its connections does not answer: only
// the attempt's timeout ends the call. Quick calls (Get, Put, Delete,
// CompareAndSwap and Batch up to LargeRequestBytes, Descriptors) are bounded
// by Config.AttemptTimeout (default 1s), so a call sent to a dead leader
// fails over after about that long. Calls whose work grows with the data or
// the cluster (Init, DeleteRange, Scan pages, Ranges, larger point
// requests) get Config.SlowAttemptTimeout (default 10s), so that slow but
// healthy calls are not cut and retried. ChangeReplicas is bounded by its
// context alone: adding a replica streams the range's data to the new
// node, as long as that takes (a leader that dies meanwhile ends the
// attempt when its connection does). A node whose attempt timed out is
// suspect for Config.SuspectFor: the client skips cached leaderships and
// NotLeader hints naming it, passes it over in round robin while another
// node is not suspect, and reloads descriptors to learn the new leader, so
// only the first call after a node's death waits for the timeout. Reads
// do not even wait that long: a Get whose node has not answered after
// Config.HedgeAfter (default 250ms) is also sent to another node, the
// first answer wins, and the slow node becomes suspect. Writes are not
// hedged: their attempts go one at a time.
//
// # Exactly-once writes
//
// Every write (Put, Delete, DeleteRange, CompareAndSwap, Batch) belongs
// to the Client's session: a random 16-byte id and a seq per write, the
// same for every attempt of that write (kvpb.Session). The range that
// applies a write keeps its answer until the client says (with the
// lowest seq it still waits for, sent with each write) that it has it;
// an attempt of a write that already applied gets that answer again and
// changes nothing. So a write whose attempt timed out or lost its
// connection, and is retried on another node, applies once: a retried
// Put returns the timestamp it was written with, a retried
// CompareAndSwap that succeeded reports its success, a retried Delete
// that it deleted, a retried DeleteRange its count. With the default
// retries the client's operations are linearizable; an operation that
// returns an error (its context ended, MaxAttempts) may or may not have
// applied, and if it did, it applied once, before the error.
//
// Writes carry when they were first sent, on the cluster's HLC: the
// client reads that clock from Descriptors (once per 30 seconds at most;
// write answers keep it current) and advances it with its monotonic
// clock. A range refuses a write issued more than a minute before it
// could apply (FailedPrecondition, reason kvpb.ReasonRequestTooOld: that
// attempt did nothing, an earlier one may have applied), which is what
// lets ranges forget a session idle for 10 minutes safely. A write whose
// context outlives a minute of failures therefore ends with that error.
// Many writes of one Client may be in flight at once; when its seqs run
// 4,096 past the oldest write still in flight, the Client starts a new
// session, so a stuck write does not make ranges keep every later answer.
// Against servers without Descriptors (they predate sessions) writes go
// without a session and a retried write may apply twice.
//
// Scan pages through [start, end) across ranges, forward or reverse, with
// a total limit, following the server's resume key; each page is read at
// its own time. Init (idempotent) bootstraps a cluster, or on an
// initialized one reports its layout and how it differs from the one
// asked for (InitResult.LayoutDiffers); Ranges lists a node's local
// replicas. They serve `pleiades init` and `pleiades ranges`.
//
// A Client is safe for concurrent use. Package kvclienttest runs an in-memory
// stand-in for a raftd cluster on real bus endpoints for tests.
package kvclient
