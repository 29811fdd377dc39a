package kvpb

import "bytes"

// WorkflowPrefix is the daemon system prefix of workflowd's state
// (instances, indexes, events, definitions): 0x00 "wf/". Its keys live in
// the meta range ["", 0x01), next to the range descriptors.
var WorkflowPrefix = []byte{0x00, 'w', 'f', '/'}

// DaemonPrefixes are the system prefixes a request with Header.system may
// use. The meta prefix (0x00 "meta/", range descriptors) is never one.
var DaemonPrefixes = [][]byte{WorkflowPrefix}

// DaemonPrefix returns the daemon system prefix holding key, or nil.
func DaemonPrefix(key []byte) []byte {
	for _, p := range DaemonPrefixes {
		if bytes.HasPrefix(key, p) {
			return p
		}
	}
	return nil
}

// PrefixEnd returns the first key after every key with prefix p (p must
// not be all 0xff).
func PrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
