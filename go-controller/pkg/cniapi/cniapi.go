// Package cniapi is the protocol between the kovn-cni plugin binary and the node agent's CNI server: JSON over
// HTTP on a unix socket that only root can open. The plugin stays small and stateless; it forwards the
// runtime's request and prints the agent's answer. Errors travel as CNI errors (well-known code, message, details).
package cniapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/types"
)

// DefaultSocket is where the node agent listens unless configured otherwise.
const DefaultSocket = "/var/run/kovn/cni.sock"

// Path is the HTTP path of the CNI endpoint.
const Path = "/cni"

// Commands.
const (
	Add    = "ADD"
	Del    = "DEL"
	Check  = "CHECK"
	GC     = "GC"
	Status = "STATUS"
)

// CNI spec 1.1 error codes that the CNI library does not name.
const (
	// ErrPluginNotAvailable: the plugin cannot serve ADD now (STATUS).
	ErrPluginNotAvailable uint = 50
)

// Request is one CNI invocation, forwarded by the plugin.
type Request struct {
	Command     string `json:"command"`
	ContainerID string `json:"containerID,omitempty"`
	Netns       string `json:"netns,omitempty"`
	IfName      string `json:"ifName,omitempty"`
	// Pod identity from CNI_ARGS (K8S_POD_NAMESPACE, K8S_POD_NAME, K8S_POD_UID).
	PodNamespace string `json:"podNamespace,omitempty"`
	PodName      string `json:"podName,omitempty"`
	PodUID       string `json:"podUID,omitempty"`
	// Config is the network configuration the runtime passed on stdin (with prevResult for CHECK and the valid
	// attachments for GC).
	Config json.RawMessage `json:"config,omitempty"`
	// TimeoutMillis is how long the plugin waits for the answer; the agent gives up a little earlier so that
	// its explanation, not a bare timeout, reaches the runtime.
	TimeoutMillis int64 `json:"timeoutMillis,omitempty"`
}

// Response is the agent's answer: a CNI result for ADD, or an error.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *types.Error    `json:"error,omitempty"`
}

// NetConf is kovn's plugin configuration (one entry of the conflist).
type NetConf struct {
	types.PluginConf
	// ServerSocket is the node agent's CNI socket.
	ServerSocket string `json:"serverSocket,omitempty"`
	// TimeoutSeconds bounds one request (default 120).
	TimeoutSeconds int `json:"timeoutSeconds,omitempty"`
}

// Call sends req to the agent at socket and returns its response. A dead or absent agent is a CNI "try again
// later" error that says where the plugin looked.
func Call(ctx context.Context, socket string, req *Request) (*Response, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://kovn"+Path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	start := time.Now()
	hresp, err := hc.Do(hreq)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, types.NewError(types.ErrTryAgainLater,
				fmt.Sprintf("kovn node agent is not running: nothing listens on %s", socket), err.Error())
		}
		if ctx.Err() != nil {
			return nil, types.NewError(types.ErrTryAgainLater,
				fmt.Sprintf("kovn node agent did not answer %s within %s", req.Command, time.Since(start).Round(time.Millisecond)), err.Error())
		}
		return nil, types.NewError(types.ErrIOFailure, "cannot reach the kovn node agent at "+socket, err.Error())
	}
	defer hresp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(hresp.Body, 1<<20))
	if err != nil {
		return nil, types.NewError(types.ErrIOFailure, "reading the kovn node agent's answer", err.Error())
	}
	var resp Response
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure,
			fmt.Sprintf("kovn node agent answered %s with something that is not a CNI response", hresp.Status), string(data))
	}
	return &resp, nil
}

// ParseNetConf decodes the plugin configuration from stdin.
func ParseNetConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "kovn-cni: the network configuration is not valid JSON", err.Error())
	}
	if conf.ServerSocket == "" {
		conf.ServerSocket = DefaultSocket
	}
	if conf.TimeoutSeconds <= 0 {
		conf.TimeoutSeconds = 120
	}
	return conf, nil
}
