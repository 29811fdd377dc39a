module github.com/pleiades-db/pleiades/stored

go 1.26.0

require github.com/pleiades-db/pleiades/shared v0.0.0

require (
	github.com/linxGnu/grocksdb v1.7.15 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)

replace github.com/pleiades-db/pleiades/shared => ../shared
