// Package cniserver is the node agent's CNI server: it answers kovn-cni's requests (package cniapi) on a unix
// socket only root can open. ADD waits (by watch) for the controller's pod network annotation, wires a veth into
// the integration bridge with the pod's logical port as iface-id, waits (by OVSDB monitor) for ovn-controller
// to install the port, and returns a CNI 1.1 result. DEL, CHECK, GC and STATUS complete the spec.
package cniserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/kovn-io/kovn/go-controller/pkg/cniapi"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
)

// Config is what the server needs.
type Config struct {
	NodeName string
	Socket   string
	Bridge   string
	// HostNetns is the node's network namespace path; empty means the agent's own.
	HostNetns string
	// NoTxChecksum turns off tx checksum offload in pods (needed on the OVS userspace datapath).
	NoTxChecksum      bool
	AnnotationTimeout time.Duration // default 60 s
	InstallTimeout    time.Duration // default 60 s
	Kube              kubernetes.Interface
	OVS               client.Client
	// Ready says whether the node agent can serve pods (STATUS); nil means always.
	Ready   func() error
	Metrics *Metrics
	Logger  *slog.Logger
}

// Server is the CNI server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	hostNS    ns.NetNS
	pods      *podWatch
	installed *nodeovs.InstallWatcher
	metrics   *Metrics
}

// New builds a server; Run serves.
func New(cfg Config) (*Server, error) {
	if cfg.NodeName == "" || cfg.Socket == "" || cfg.Bridge == "" || cfg.Kube == nil || cfg.OVS == nil {
		return nil, errors.New("cniserver: node name, socket, bridge, Kubernetes and OVS clients are required")
	}
	if cfg.AnnotationTimeout <= 0 {
		cfg.AnnotationTimeout = 60 * time.Second
	}
	if cfg.InstallTimeout <= 0 {
		cfg.InstallTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	var hostNS ns.NetNS
	var err error
	if cfg.HostNetns == "" {
		hostNS, err = ns.GetCurrentNS()
	} else {
		hostNS, err = ns.GetNS(cfg.HostNetns)
	}
	if err != nil {
		return nil, fmt.Errorf("cniserver: host network namespace: %w", err)
	}
	return &Server{
		cfg: cfg, log: cfg.Logger, hostNS: hostNS, metrics: cfg.Metrics,
		pods:      newPodWatch(cfg.Kube, cfg.NodeName),
		installed: nodeovs.NewInstallWatcher(cfg.OVS),
	}, nil
}

// Run listens on the socket (mode 0600) and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	defer s.hostNS.Close()
	if err := s.pods.start(ctx); err != nil {
		return err
	}
	// The socket is created with the process umask and only then chmod'ed: keep its directory root-only so no
	// one else can reach it meanwhile.
	if err := os.MkdirAll(filepath.Dir(s.cfg.Socket), 0o700); err != nil {
		return fmt.Errorf("cniserver: %w", err)
	}
	if err := os.Chmod(filepath.Dir(s.cfg.Socket), 0o700); err != nil {
		return fmt.Errorf("cniserver: %w", err)
	}
	if err := os.Remove(s.cfg.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cniserver: remove old socket: %w", err)
	}
	ln, err := net.Listen("unix", s.cfg.Socket)
	if err != nil {
		return fmt.Errorf("cniserver: listen on %s: %w", s.cfg.Socket, err)
	}
	if err := os.Chmod(s.cfg.Socket, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("cniserver: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+cniapi.Path, s.serveCNI)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		// In-flight requests finish (their own deadlines bound them) before Run returns and its caller closes
		// the clients they use.
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	s.log.Info("CNI server listening", "socket", s.cfg.Socket)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("cniserver: %w", err)
	}
	<-stopped
	return nil
}

func (s *Server) serveCNI(w http.ResponseWriter, r *http.Request) {
	var req cniapi.Request
	var resp cniapi.Response
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		resp.Error = types.NewError(types.ErrDecodingFailure, "kovn node agent: unreadable request", err.Error())
	} else {
		start := time.Now()
		result, err := s.handle(r.Context(), &req)
		s.metrics.observeRequest(req.Command, err, time.Since(start))
		if err != nil {
			resp.Error = asCNIError(err)
			level := slog.LevelWarn
			if req.Command == cniapi.Status {
				level = slog.LevelDebug
			}
			s.log.Log(r.Context(), level, "CNI request failed", "command", req.Command, "pod", req.PodNamespace+"/"+req.PodName,
				"container", req.ContainerID, "duration", time.Since(start), "err", resp.Error.Msg, "details", resp.Error.Details)
		} else {
			resp.Result = result
			s.log.Debug("CNI request done", "command", req.Command, "pod", req.PodNamespace+"/"+req.PodName, "duration", time.Since(start))
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(&resp)
}

func (s *Server) handle(ctx context.Context, req *cniapi.Request) (json.RawMessage, error) {
	if req.TimeoutMillis > 0 {
		budget := time.Duration(req.TimeoutMillis)*time.Millisecond - time.Duration(req.TimeoutMillis)*time.Millisecond/10
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	switch req.Command {
	case cniapi.Add:
		return s.add(ctx, req)
	case cniapi.Del:
		return nil, s.del(ctx, req)
	case cniapi.Check:
		return nil, s.check(ctx, req)
	case cniapi.GC:
		return nil, s.gc(ctx, req)
	case cniapi.Status:
		return nil, s.status()
	default:
		return nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("unknown CNI command %q", req.Command), "")
	}
}

func (s *Server) status() error {
	if !s.pods.synced() {
		return types.NewError(cniapi.ErrPluginNotAvailable, "kovn node agent is starting: its pod cache has not synced yet", "")
	}
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(); err != nil {
			return types.NewError(cniapi.ErrPluginNotAvailable, "kovn node agent is not ready: "+err.Error(), "")
		}
	}
	return nil
}

// asCNIError keeps CNI errors as they are and turns anything else into an I/O failure with its text.
func asCNIError(err error) *types.Error {
	var e *types.Error
	if errors.As(err, &e) {
		return e
	}
	return types.NewError(types.ErrIOFailure, err.Error(), "")
}
