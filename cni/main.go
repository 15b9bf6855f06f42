// Command kovn-cni is the CNI plugin binary the container runtime executes for every pod sandbox. It speaks CNI
// spec 1.1 (ADD, DEL, CHECK, STATUS, GC, VERSION) and forwards each request to the kovn node agent on its node
// over a root-only unix socket; it keeps no state of its own.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"github.com/kovn-io/kovn/go-controller/pkg/cniapi"
	"github.com/kovn-io/kovn/go-controller/pkg/version"
)

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		fmt.Println("kovn-cni", version.Get())
		return
	}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    func(a *skel.CmdArgs) error { return forward(cniapi.Add, a) },
		Del:    func(a *skel.CmdArgs) error { return forward(cniapi.Del, a) },
		Check:  func(a *skel.CmdArgs) error { return forward(cniapi.Check, a) },
		GC:     func(a *skel.CmdArgs) error { return forward(cniapi.GC, a) },
		Status: func(a *skel.CmdArgs) error { return forward(cniapi.Status, a) },
	}, cniversion.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"), "kovn-cni "+version.Get().Version)
}

// forward sends one command to the node agent and prints its result (ADD) or returns its error.
func forward(command string, a *skel.CmdArgs) error {
	conf, err := cniapi.ParseNetConf(a.StdinData)
	if err != nil {
		return err
	}
	req := &cniapi.Request{
		Command: command, ContainerID: a.ContainerID, Netns: a.Netns, IfName: a.IfName, Config: a.StdinData,
		TimeoutMillis: int64(conf.TimeoutSeconds) * 1000,
	}
	if err := podIdentity(a.Args, req); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(conf.TimeoutSeconds)*time.Second)
	defer cancel()
	resp, err := cniapi.Call(ctx, conf.ServerSocket, req)
	if err != nil {
		return err
	}
	if resp.Error != nil {
		return resp.Error
	}
	if command != cniapi.Add {
		return nil
	}
	result, err := current.NewResult(resp.Result)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "kovn node agent returned an unreadable CNI result", err.Error())
	}
	return types.PrintResult(result, conf.CNIVersion)
}

// podIdentity reads K8S_POD_NAMESPACE, K8S_POD_NAME and K8S_POD_UID from CNI_ARGS ("K=V;K=V").
func podIdentity(args string, req *cniapi.Request) error {
	if args == "" {
		return nil
	}
	for _, kv := range strings.Split(args, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS: %q is not KEY=VALUE", kv), "")
		}
		switch k {
		case "K8S_POD_NAMESPACE":
			req.PodNamespace = v
		case "K8S_POD_NAME":
			req.PodName = v
		case "K8S_POD_UID":
			req.PodUID = v
		}
	}
	return nil
}
