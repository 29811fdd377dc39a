package logkey

// Attribute keys.
const (
	// Daemon is the daemon's name ("stored", "raftd", ...); set once on the root logger.
	Daemon = "daemon"
	// Node is the node id; set once on the root logger.
	Node = "node"
	// Component names a subsystem within a daemon (see the Comp* values).
	Component = "component"
	// Range is a range id.
	Range = "range"
	// Replica is a replica id.
	Replica = "replica"
	// Peer is a remote daemon's bus address or node id.
	Peer = "peer"
	// Addr is a local address (bound or configured).
	Addr = "addr"
	// Protocol is a bus protocol name or id.
	Protocol = "protocol"
	// Method is a bus method name.
	Method = "method"
	// Code is a bus error code.
	Code = "code"
	// Err is an error value.
	Err = "err"
	// Duration is an elapsed time.
	Duration = "duration"
	// Key is a user or system key (log at Debug only).
	Key = "key"
	// Term is a raft term.
	Term = "term"
	// Index is a raft log index.
	Index = "index"
	// Workflow is a workflow instance id.
	Workflow = "workflow"
	// Version is a build version.
	Version = "version"
	// Path is a file system path.
	Path = "path"
)

// Values of Component.
const (
	CompBus       = "bus"
	CompAdmin     = "admin"
	CompRuntime   = "runtime"
	CompTransport = "transport"
	CompStorage   = "storage"
	CompGossip    = "gossip"
	CompClock     = "clock"
	CompRaft      = "raft"
	CompWorkflow  = "workflow"
	CompNATS      = "nats"
)
