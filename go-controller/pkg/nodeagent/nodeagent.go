// Package nodeagent is `kovn node`: on every node it configures the local Open vSwitch for ovn-controller,
// creates the management port (the node's own interface on the pod network), installs the CNI plugin and its
// configuration, serves CNI requests, and exposes the node's metrics.
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/ovn-kubernetes/libovsdb/client"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"

	"github.com/kovn-io/kovn/go-controller/pkg/cniserver"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/gateway"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeovs"
	"github.com/kovn-io/kovn/go-controller/pkg/ovndb"
)

// Config is everything the node agent needs.
type Config struct {
	NodeName string
	Cluster  config.Cluster
	Kube     kubernetes.Interface
	// OVSRemote is the local Open_vSwitch database ("unix:/var/run/openvswitch/db.sock").
	OVSRemote string
	// OVS settings ovn-controller reads; SystemID defaults to NodeName, EncapType to the cluster's.
	OVS nodeovs.Settings
	// HostNetns is the node's network namespace path; empty means the agent's own.
	HostNetns string
	// ManagementPort is the name of the management interface (default kovn-mp0).
	ManagementPort string
	// CNI plugin installation and server.
	CNISocket     string
	CNIConfFile   string // e.g. /etc/cni/net.d/10-kovn.conflist; empty skips writing it
	CNIBinDir     string // e.g. /opt/cni/bin; empty skips installing the binary
	CNIPluginPath string // the kovn-cni binary to install
	// Gateway configures the node's external bridge and gateway; nil runs the node without one.
	Gateway *gateway.Config
	// MetricsAddress serves /metrics (and /healthz, /readyz); empty disables it.
	MetricsAddress string
	Logger         *slog.Logger
}

// Agent is a running node agent.
type Agent struct {
	cfg    Config
	log    *slog.Logger
	ovs    client.Client
	hostNS ns.NetNS
	reg    *prometheus.Registry
	ready  atomic.Pointer[error]
}

// Run runs the node agent until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if cfg.NodeName == "" || cfg.Kube == nil || cfg.OVSRemote == "" {
		return errors.New("node agent: node name, Kubernetes client and OVS remote are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ManagementPort == "" {
		cfg.ManagementPort = "kovn-mp0"
	}
	if cfg.OVS.SystemID == "" {
		cfg.OVS.SystemID = cfg.NodeName
	}
	if cfg.OVS.EncapType == "" {
		cfg.OVS.EncapType = cfg.Cluster.Encap
	}
	if cfg.OVS.Bridge == "" {
		cfg.OVS.Bridge = "br-int"
	}
	a := &Agent{cfg: cfg, log: cfg.Logger.With("node", cfg.NodeName), reg: prometheus.NewRegistry()}
	notReady := errors.New("management port not configured yet")
	a.ready.Store(&notReady)
	var err error
	if cfg.HostNetns == "" {
		a.hostNS, err = ns.GetCurrentNS()
	} else {
		a.hostNS, err = ns.GetNS(cfg.HostNetns)
	}
	if err != nil {
		return fmt.Errorf("node agent: host network namespace: %w", err)
	}
	defer a.hostNS.Close()

	if a.ovs, err = ovndb.ConnectOVS(ctx, ovndb.Config{Address: cfg.OVSRemote, Reconnect: true, Logger: cfg.Logger}); err != nil {
		return fmt.Errorf("node agent: %w", err)
	}
	defer a.ovs.Close()
	if err := nodeovs.Configure(ctx, a.ovs, cfg.OVS); err != nil {
		return fmt.Errorf("node agent: %w", err)
	}
	var gw *gateway.Gateway
	if cfg.Gateway != nil {
		if gw, err = a.setupGateway(ctx); err != nil {
			return fmt.Errorf("node agent: %w", err)
		}
	}
	a.log.Info("OVS configured for OVN", "bridge", cfg.OVS.Bridge, "datapath", cfg.OVS.DatapathType, "encap", cfg.OVS.EncapType, "encapIP", cfg.OVS.EncapIP)

	srv, err := cniserver.New(cniserver.Config{
		NodeName: cfg.NodeName, Socket: cfg.CNISocket, Bridge: cfg.OVS.Bridge, HostNetns: cfg.HostNetns,
		NoTxChecksum: cfg.OVS.DatapathType == "netdev", Kube: cfg.Kube, OVS: a.ovs,
		Ready: a.readyErr, Metrics: cniserver.NewMetrics(a.reg), Logger: a.log,
	})
	if err != nil {
		return err
	}
	// Every goroutine ends before the deferred closes run: none may use the OVS client after it is closed.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	goRun := func(f func(context.Context) error) {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- f(ctx) }()
	}
	defer wg.Wait()
	defer cancel()
	goRun(srv.Run)
	goRun(a.runManagementPort)
	if gw != nil {
		goRun(func(ctx context.Context) error { return gw.RunFlows(ctx, 2*time.Second) })
		goRun(func(ctx context.Context) error { return a.publishGateway(ctx, gw.Info()) })
	}
	goRun(func(ctx context.Context) error { return a.runServices(ctx, gw, 30*time.Second) })
	if cfg.MetricsAddress != "" {
		goRun(a.serveMetrics)
	}
	if err := installCNI(cfg); err != nil {
		return err
	}
	a.log.Info("CNI plugin installed", "conf", cfg.CNIConfFile, "binDir", cfg.CNIBinDir, "socket", cfg.CNISocket)
	for {
		select {
		case err := <-errs:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func (a *Agent) readyErr() error {
	if p := a.ready.Load(); p != nil {
		return *p
	}
	return nil
}

func (a *Agent) serveMetrics(ctx context.Context) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := a.readyErr(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Addr: a.cfg.MetricsAddress, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics server: %w", err)
	}
	return nil
}
