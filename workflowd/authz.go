package workflowd

import (
	"context"
	"fmt"
	"strings"

	"github.com/pleiades-db/pleiades/shared/bus"
	"github.com/pleiades-db/pleiades/shared/tlsutil"
	"github.com/pleiades-db/pleiades/shared/wire"
	"github.com/pleiades-db/pleiades/shared/workflowclient"
	"github.com/pleiades-db/pleiades/workflowd/internal/lifecycle"
)

// rules authorizes workflowd's protocol: workflows are for applications
// (client certificates), the cluster's daemons and operators alike. A
// client certificate's key prefixes limit workflow names as they limit
// keys: it defines, starts, reads, lists, controls and subscribes to
// definitions (and their instances) whose id lies under one of its
// prefixes, and publishes events whose name does; a definition it stores
// keeps those prefixes for its steps (flow.Def's KeyPrefixes). The
// handlers check these (they need the instance's definition). The cluster
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

// callerScope is the role whose key prefixes limit the caller: its
// certificate's client role, or no limit (nodes, operators, and callers
// without a certificate role on an in-process bus).
func callerScope(ctx context.Context) tlsutil.Role {
	if peer, ok := bus.PeerFromContext(ctx); ok && peer.Role.Kind == tlsutil.KindClient {
		return peer.Role
	}
	return tlsutil.ClientRole()
}

// allowDefinition refuses a definition id outside the caller's prefixes.
func allowDefinition(ctx context.Context, def string) error {
	if sc := callerScope(ctx); !sc.AllowsKey([]byte(def)) {
		return &bus.Error{Code: bus.CodePermissionDenied, Reason: bus.ReasonPermissionDenied,
			Message: fmt.Sprintf("workflow: definition %q is outside the certificate's key prefixes (%s)", def, sc)}
	}
	return nil
}

// allowInstance refuses an instance whose definition lies outside the
// caller's prefixes.
func (s *Server) allowInstance(ctx context.Context, id string) error {
	if len(callerScope(ctx).Prefixes) == 0 {
		return nil
	}
	rec, err := s.eng.Get(ctx, id)
	if err != nil {
		return wireErr(err)
	}
	return allowDefinition(ctx, rec.GetDefinition())
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
