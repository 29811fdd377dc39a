package clockd

import (
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/clockclient"
)

// rules authorizes clockd's protocol: the clock and its probes are for
// the cluster's daemons (node certificates); operators (admin
// certificates) may read its status and offsets.
func rules() bus.Rules {
	return bus.Rules{
		clockclient.MethodNow:         {Roles: bus.Nodes},
		clockclient.MethodUpdate:      {Roles: bus.Nodes},
		clockclient.MethodProbe:       {Roles: bus.Nodes},
		clockclient.MethodWatchHealth: {Roles: bus.Nodes},
		clockclient.MethodStatus:      {Roles: bus.Nodes | bus.Admins},
		clockclient.MethodOffsets:     {Roles: bus.Nodes | bus.Admins},
	}
}
