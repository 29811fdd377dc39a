package gossipd

import (
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/gossipclient"
)

// rules authorizes gossipd's protocol: the failure detector (datagrams,
// push-pull, ping) and what the node's daemons use (metadata, broadcasts,
// events) are for node certificates; operators (admin certificates) may
// also read the membership and coordinates and make the node join or
// leave. Applications have no business here.
func rules() bus.Rules {
	ops := bus.Nodes | bus.Admins
	return bus.Rules{
		"datagram":                     {Roles: bus.Nodes},
		gossipclient.MethodPushPull:    {Roles: bus.Nodes},
		gossipclient.MethodPing:        {Roles: bus.Nodes},
		gossipclient.MethodSetMetadata: {Roles: bus.Nodes},
		gossipclient.MethodBroadcast:   {Roles: bus.Nodes},
		gossipclient.MethodSubscribe:   {Roles: bus.Nodes},
		gossipclient.MethodMembers:     {Roles: ops},
		gossipclient.MethodMember:      {Roles: ops},
		gossipclient.MethodCoordinate:  {Roles: ops},
		gossipclient.MethodEstimateRTT: {Roles: ops},
		gossipclient.MethodJoin:        {Roles: ops},
		gossipclient.MethodLeave:       {Roles: ops},
	}
}
