// Package tlsutil makes and loads the TLS material of the Pleiades bus: a
// cluster CA, node certificates signed by it, and the mutual TLS 1.3
// configuration every bus endpoint uses for both listening and dialing.
//
// A certificates directory holds ca.crt, node.crt and node.key (and, where
// certificates are issued, ca.key, mode 0600). Every node certificate is
// valid for server and client authentication and carries ServerName as a
// DNS name; clients verify peers against that name and the cluster CA, so
// bus addresses may be bare IPs. A certificate from any other CA is
// refused on both sides.
//
// CreateCA and CreateNode are what `pleiades cert` runs. EnsureDev is the
// development shortcut: it creates whatever is missing in one directory
// and is safe when several daemons of one node start at once. NewTestCA
// gives tests an in-memory CA.
package tlsutil
