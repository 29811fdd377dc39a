package workflowd

import (
	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
)

// rules authorizes workflowd's protocol: workflows are for applications
// (client certificates), the cluster's daemons and operators alike.
// Client key prefixes limit KV keys, not workflow names.
func rules() bus.Rules {
	all := bus.Rule{Roles: bus.Nodes | bus.Clients | bus.Admins}
	return bus.Rules{
		workflowclient.MethodDefine:       all,
		workflowclient.MethodDefinitions:  all,
		workflowclient.MethodStart:        all,
		workflowclient.MethodGet:          all,
		workflowclient.MethodList:         all,
		workflowclient.MethodSuspend:      all,
		workflowclient.MethodResume:       all,
		workflowclient.MethodTerminate:    all,
		workflowclient.MethodPublishEvent: all,
		workflowclient.MethodSubscribe:    all,
	}
}
