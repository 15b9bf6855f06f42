package cniserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/kovn-io/kovn/go-controller/pkg/annotations"
	"github.com/kovn-io/kovn/go-controller/pkg/cniapi"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/ownership"
	"github.com/kovn-io/kovn/go-controller/pkg/podnet"
	"github.com/kovn-io/kovn/go-controller/pkg/topology"
)

// validate checks the fields a pod attachment needs and that the network namespace exists.
func validate(req *cniapi.Request) error {
	switch {
	case req.ContainerID == "":
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID is empty", "")
	case req.IfName == "":
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_IFNAME is empty", "")
	case req.PodNamespace == "" || req.PodName == "":
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			"CNI_ARGS lacks K8S_POD_NAMESPACE or K8S_POD_NAME: kovn serves Kubernetes pods only", "")
	case req.Netns == "":
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_NETNS is empty", "")
	}
	if _, err := os.Stat(req.Netns); err != nil {
		return types.NewError(types.ErrInvalidNetNS,
			fmt.Sprintf("pod %s/%s: network namespace %s does not exist", req.PodNamespace, req.PodName, req.Netns), err.Error())
	}
	return nil
}

func (s *Server) attachment(req *cniapi.Request, n annotations.PodNetwork) podnet.Attachment {
	return podnet.Attachment{
		Netns: req.Netns, IfName: req.IfName, HostName: podnet.HostVethName(req.ContainerID),
		Network: n, NoTxChecksum: s.cfg.NoTxChecksum,
	}
}

// add wires the pod into the integration bridge and returns its CNI result.
func (s *Server) add(ctx context.Context, req *cniapi.Request) (json.RawMessage, error) {
	if err := validate(req); err != nil {
		return nil, err
	}
	pod := req.PodNamespace + "/" + req.PodName
	actx, cancel := context.WithTimeout(ctx, s.cfg.AnnotationTimeout)
	start := time.Now()
	net, _, err := s.pods.waitNetwork(actx, req.PodNamespace, req.PodName, req.PodUID)
	cancel()
	s.metrics.annotationWait.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater, err.Error(), "")
	}
	a := s.attachment(req, net)
	res, err := podnet.Setup(s.hostNS, a)
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("pod %s: set up %s: %v", pod, req.IfName, err), "")
	}
	owner := ownership.NewOwner(ownership.KindPod, req.PodNamespace, req.PodName)
	port := nodeovs.PortSpec{Name: a.HostName, ExternalIDs: owner.ID("port-" + req.IfName).ExternalIDs(map[string]string{
		nodeovs.KeyIfaceID: topology.PodPort(req.PodNamespace, req.PodName),
		nodeovs.KeyPod:     pod,
		nodeovs.KeySandbox: req.ContainerID,
		nodeovs.KeyIfName:  req.IfName,
		"attached-mac":     net.MAC,
		"kovn.io/netns":    req.Netns,
		"kovn.io/pod-uid":  req.PodUID,
	})}
	if err := nodeovs.EnsurePort(ctx, s.cfg.OVS, s.cfg.Bridge, port); err != nil {
		_ = podnet.Teardown(s.hostNS, req.Netns, req.IfName, a.HostName)
		return nil, types.NewError(types.ErrIOFailure, fmt.Sprintf("pod %s: %v (is the node's OVS database running?)", pod, err), "")
	}
	ictx, cancel := context.WithTimeout(ctx, s.cfg.InstallTimeout)
	start = time.Now()
	err = s.installed.Wait(ictx, a.HostName)
	cancel()
	s.metrics.installWait.Observe(time.Since(start).Seconds())
	if err != nil {
		return nil, types.NewError(types.ErrTryAgainLater, fmt.Sprintf("pod %s: %v (is ovn-controller running on this node?)", pod, err), "")
	}
	return json.Marshal(result(req, a, res))
}

// result builds the CNI 1.1 result: the host veth, the pod interface, its addresses and routes.
func result(req *cniapi.Request, a podnet.Attachment, res podnet.Result) *current.Result {
	r := &current.Result{
		CNIVersion: "1.1.0",
		Interfaces: []*current.Interface{
			{Name: a.HostName, Mac: res.HostMAC.String()},
			{Name: req.IfName, Mac: res.PodMAC.String(), Sandbox: req.Netns, Mtu: a.Network.MTU},
		},
	}
	podIf := 1
	for _, p := range a.Network.IPs {
		ipc := &current.IPConfig{Interface: &podIf, Address: net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
		for _, gw := range a.Network.Gateways {
			if p.Masked().Contains(gw) {
				ipc.Gateway = gw.AsSlice()
			}
		}
		r.IPs = append(r.IPs, ipc)
	}
	for _, gw := range a.Network.Gateways {
		bits := gw.BitLen()
		r.Routes = append(r.Routes, &types.Route{Dst: net.IPNet{IP: make(net.IP, bits/8), Mask: net.CIDRMask(0, bits)}, GW: gw.AsSlice()})
	}
	for _, rt := range a.Network.Routes {
		r.Routes = append(r.Routes, &types.Route{
			Dst: net.IPNet{IP: rt.Dest.Addr().AsSlice(), Mask: net.CIDRMask(rt.Dest.Bits(), rt.Dest.Addr().BitLen())}, GW: rt.NextHop.AsSlice()})
	}
	return r
}

// check verifies what ADD made: the annotation, the OVS port bound to the pod's logical port and installed by
// ovn-controller, and the interfaces with their addresses.
func (s *Server) check(ctx context.Context, req *cniapi.Request) error {
	if err := validate(req); err != nil {
		return err
	}
	pod := req.PodNamespace + "/" + req.PodName
	p := s.pods.get(req.PodNamespace, req.PodName)
	if p == nil {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("pod %s is not on this node", pod), "")
	}
	net, ok, err := annotations.ParsePodNetwork(p.Annotations)
	if err != nil || !ok {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("pod %s: no valid network annotation (%v)", pod, err), "")
	}
	a := s.attachment(req, net)
	iface, err := nodeovs.Interface(s.cfg.OVS, a.HostName)
	if err != nil || iface == nil {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("pod %s: OVS port %s is missing", pod, a.HostName), "")
	}
	if want := topology.PodPort(req.PodNamespace, req.PodName); iface.ExternalIDs[nodeovs.KeyIfaceID] != want {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("pod %s: OVS port %s is bound to %q, want %q", pod, a.HostName, iface.ExternalIDs[nodeovs.KeyIfaceID], want), "")
	}
	if iface.ExternalIDs[nodeovs.KeyOVNInstalled] != "true" {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("pod %s: ovn-controller has not installed port %s", pod, a.HostName), "")
	}
	if err := podnet.Check(s.hostNS, a); err != nil {
		return types.NewError(types.ErrIOFailure, fmt.Sprintf("pod %s: %v", pod, err), "")
	}
	return nil
}
