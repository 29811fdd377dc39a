module github.com/pleiades-db/pleiades/deploy

go 1.26

replace github.com/pleiades-db/pleiades/shared => ../shared

replace github.com/pleiades-db/pleiades/stored => ../stored

replace github.com/pleiades-db/pleiades/raftd => ../raftd

replace github.com/pleiades-db/pleiades/gossipd => ../gossipd

replace github.com/pleiades-db/pleiades/clockd => ../clockd

replace github.com/pleiades-db/pleiades/workflowd => ../workflowd

replace github.com/pleiades-db/pleiades/services => ../services
