package workflowd

import (
	"context"
	"strings"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
	"github.com/pleiades-db/pleiades/workflowd/internal/lifecycle"
)

// rules authorizes workflowd's protocol: workflows are for applications
// (client certificates), the cluster's daemons and operators alike.
// Client key prefixes limit KV keys, not workflow names. The cluster
// lifecycle is for operators and nodes: Decommission and Nodes refuse
// client certificates, Start refuses the lifecycle definitions to
// everyone (workflowd starts them), and Suspend, Resume and Terminate of
// a lifecycle instance refuse client certificates (authorizeLifecycle).
func rules() bus.Rules {
	all := bus.Rule{Roles: bus.Nodes | bus.Clients | bus.Admins}
	operators := bus.Rule{Roles: bus.Nodes | bus.Admins}
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
		workflowclient.MethodDecommission: operators,
		workflowclient.MethodNodes:        operators,
	}
}

// authorizeLifecycle refuses a client certificate the control (op) of a
// lifecycle instance: suspending or terminating a re-replication or a
// decommission is an operator's decision.
func (s *Server) authorizeLifecycle(ctx context.Context, p wire.Protocol, op, id string) error {
	peer, ok := bus.PeerFromContext(ctx)
	if !ok || peer.Role.Kind != tlsutil.KindClient {
		return nil
	}
	rec, err := s.eng.Get(ctx, id)
	if err != nil {
		return nil // the control itself reports it
	}
	if strings.HasPrefix(rec.GetDefinition(), lifecycle.Reserved) {
		return bus.PermissionDenied(p, op, peer.Role, "instance "+id+" is a cluster lifecycle workflow ("+rec.GetDefinition()+"): admin or node certificates only")
	}
	return nil
}
