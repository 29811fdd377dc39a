package raftd

// SetBackgroundAdopt turns the periodic adoption of a peer's layout on or
// off; call it before Start.
func SetBackgroundAdopt(s *Server, on bool) { s.adoptInBackground = on }

// InitCallersGone counts Init calls whose caller went away before the
// answer.
func InitCallersGone(s *Server) uint64 { return s.initCallersGone.Load() }
