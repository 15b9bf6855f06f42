package cniserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/kovn-io/kovn/go-controller/pkg/cniapi"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/podnet"
)

// del removes what ADD made. It succeeds when any part is already gone: the network namespace, the OVS port,
// the veth, the pod or its annotation (the runtime calls DEL after failed ADDs and may call it twice).
func (s *Server) del(ctx context.Context, req *cniapi.Request) error {
	if req.ContainerID == "" || req.IfName == "" {
		return types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID and CNI_IFNAME are required for DEL", "")
	}
	return s.detach(ctx, req.ContainerID, req.IfName, req.Netns)
}

func (s *Server) detach(ctx context.Context, containerID, ifName, netns string) error {
	host := podnet.HostVethName(containerID)
	var errs []error
	if err := nodeovs.DeletePort(ctx, s.cfg.OVS, host); err != nil {
		errs = append(errs, err)
	}
	if err := podnet.Teardown(s.hostNS, netns, ifName, host); err != nil {
		errs = append(errs, fmt.Errorf("remove interface %s of container %s: %w", ifName, containerID, err))
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	return nil
}

// gcConfig is the part of a GC request's configuration kovn reads.
type gcConfig struct {
	ValidAttachments *[]types.GCAttachment `json:"cni.dev/valid-attachments"`
	// The key's name in drafts of the spec before it was released.
	Attachments *[]types.GCAttachment `json:"cni.dev/attachments"`
}

// gc removes the ports and interfaces of every attachment kovn made that the runtime no longer lists.
func (s *Server) gc(ctx context.Context, req *cniapi.Request) error {
	var conf gcConfig
	if err := json.Unmarshal(req.Config, &conf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "GC: unreadable configuration", err.Error())
	}
	list := conf.ValidAttachments
	if list == nil {
		list = conf.Attachments
	}
	if list == nil {
		// Without the list every attachment would look stale: refuse rather than wipe the node.
		return types.NewError(types.ErrInvalidNetworkConfig, "GC: the configuration has no cni.dev/valid-attachments list; nothing removed", "")
	}
	valid := map[[2]string]bool{}
	for _, a := range *list {
		valid[[2]string{a.ContainerID, a.IfName}] = true
	}
	ifaces, err := nodeovs.PodInterfaces(s.cfg.OVS)
	if err != nil {
		return types.NewError(types.ErrIOFailure, "GC: list pod ports", err.Error())
	}
	var errs []error
	for _, iface := range ifaces {
		cid, ifName := iface.ExternalIDs[nodeovs.KeySandbox], iface.ExternalIDs[nodeovs.KeyIfName]
		if valid[[2]string{cid, ifName}] {
			continue
		}
		s.log.Info("GC: removing stale attachment", "container", cid, "ifname", ifName, "pod", iface.ExternalIDs[nodeovs.KeyPod])
		if err := s.detach(ctx, cid, ifName, ""); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return types.NewError(types.ErrIOFailure, "GC: "+err.Error(), "")
	}
	return nil
}
