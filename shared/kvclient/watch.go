package kvclient

// MethodWatchRanges is raftd's server stream of its own replicas' range
// events (wire.ProtoKV, kvpb.WatchRangesRequest → kvpb.RangeEvent); msgd
// bridges it to NATS. The Go client does not use it.
const MethodWatchRanges = "WatchRanges"
