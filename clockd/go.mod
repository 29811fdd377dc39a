module github.com/pleiades-db/pleiades/clockd

go 1.26

require github.com/pleiades-db/pleiades/shared v0.0.0

replace github.com/pleiades-db/pleiades/shared => ../shared
