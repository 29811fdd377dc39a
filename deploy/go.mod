module github.com/pleiades-db/pleiades/deploy

go 1.26.0

replace github.com/pleiades-db/pleiades/shared => ../shared

replace github.com/pleiades-db/pleiades/stored => ../stored

replace github.com/pleiades-db/pleiades/raftd => ../raftd

replace github.com/pleiades-db/pleiades/gossipd => ../gossipd

replace github.com/pleiades-db/pleiades/clockd => ../clockd

replace github.com/pleiades-db/pleiades/workflowd => ../workflowd

replace github.com/pleiades-db/pleiades/services => ../services

require (
	github.com/pleiades-db/pleiades/services v0.0.0-00010101000000-000000000000
	github.com/pleiades-db/pleiades/shared v0.0.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/quic-go/quic-go v0.65.0 // indirect
	golang.org/x/crypto v0.57.0 // indirect
	golang.org/x/net v0.59.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
