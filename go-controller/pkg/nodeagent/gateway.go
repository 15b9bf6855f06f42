package nodeagent

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/gateway"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
)

// setupGateway makes the node's external bridge ready and, when no tunnel address was configured, uses the
// node IP for the tunnels.
func (a *Agent) setupGateway(ctx context.Context) (*gateway.Gateway, error) {
	gc := *a.cfg.Gateway
	gc.DatapathType = a.cfg.OVS.DatapathType
	gc.ChassisID = a.cfg.OVS.SystemID
	gc.HostNS = a.hostNS
	gc.Logger = a.log
	for _, cc := range a.cfg.Cluster.ClusterCIDRs {
		gc.ClusterCIDRs = append(gc.ClusterCIDRs, cc.CIDR)
	}
	gc.EncapPort = 6081
	if a.cfg.OVS.EncapType == "vxlan" {
		gc.EncapPort = 4789
	}
	g, err := gateway.Setup(ctx, a.ovs, gc)
	if err != nil {
		return nil, err
	}
	if a.cfg.OVS.EncapIP == "" {
		ip := g.Info().IP.Addr().String()
		if err := nodeovs.SetExternalIDs(ctx, a.ovs, map[string]string{"ovn-encap-ip": ip}); err != nil {
			return nil, err
		}
		a.log.Info("tunnels use the node IP", "encapIP", ip)
	}
	return g, nil
}

// publishGateway records the gateway on the Node for the controller, retrying until it lands.
func (a *Agent) publishGateway(ctx context.Context, info annotations.NodeGatewayInfo) error {
	value, err := annotations.MarshalNodeGateway(info)
	if err != nil {
		return err
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, annotations.NodeGateway, value)
	for delay := 200 * time.Millisecond; ; delay = min(2*delay, 10*time.Second) {
		_, err := a.cfg.Kube.CoreV1().Nodes().Patch(ctx, a.cfg.NodeName, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		if err == nil {
			a.log.Info("gateway published", "annotation", annotations.NodeGateway, "value", value)
			return nil
		}
		a.log.Warn("publishing the gateway failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
	}
}
