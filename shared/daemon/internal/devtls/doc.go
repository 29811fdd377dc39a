// Package devtls gives the daemon runtime its TLS material until package
// shared/tlsutil is available: a cluster CA and node certificates on disk
// (EnsureDev, Load) and an in-memory CA for tests (NewTestCA). Its
// functions have the signatures of their tlsutil counterparts, so moving
// the runtime to tlsutil is a change of import path.
//
// Configurations are TLS 1.3 only, with mutual authentication: the node
// certificate serves both sides, the CA is both RootCAs and ClientCAs, and
// every node certificate carries ServerName as a DNS name, which clients
// verify.
package devtls
