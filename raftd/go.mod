module github.com/pleiades-db/pleiades/raftd

go 1.26.0

require github.com/pleiades-db/pleiades/shared v0.0.0

require (
	github.com/anishathalye/porcupine v1.3.1 // indirect
	go.etcd.io/raft/v3 v3.7.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/pleiades-db/pleiades/shared => ../shared
