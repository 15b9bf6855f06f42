package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"

	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/controller"
	"github.com/kovn-io/kovn/go-controller/pkg/ovndb"
)

type controllerOptions struct {
	cluster        config.Flags
	kubeconfig     string
	nbAddress      string
	podWorkers     int
	pprof          bool
	aclLogRate     int
	kubeQPS        float32
	leaderElect    bool
	leaseNamespace string
	logLevel       string
	metricsAddress string
}

func newControllerCommand() *cobra.Command {
	var o controllerOptions
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "run the central controller: Kubernetes Nodes, Namespaces and Pods into the OVN Northbound database",
		RunE: func(cmd *cobra.Command, _ []string) error {
			cluster, err := o.cluster.Resolve(cmd.Flags())
			if err != nil {
				return err
			}
			return runController(cmd.Context(), o, cluster)
		},
	}
	fs := cmd.Flags()
	o.cluster.AddFlags(fs)
	fs.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (empty: in-cluster config)")
	fs.StringVar(&o.nbAddress, "nb-address", "unix:/var/run/ovn/ovnnb_db.sock", "OVN Northbound remote(s), comma-separated")
	fs.IntVar(&o.podWorkers, "pod-workers", 8, "pods reconciled in parallel")
	fs.IntVar(&o.aclLogRate, "acl-log-rate", 20, "ACL log messages per second (namespaces with kovn.io/acl-logging)")
	fs.Float32Var(&o.kubeQPS, "kube-api-qps", 200, "queries per second to the Kubernetes API (burst is twice this)")
	fs.BoolVar(&o.leaderElect, "leader-elect", true, "compete for a Lease so that only one replica writes")
	fs.StringVar(&o.leaseNamespace, "lease-namespace", "kube-system", "namespace of the leader-election Lease")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.metricsAddress, "metrics-address", ":9475", "address for /metrics and /healthz (empty: off)")
	fs.BoolVar(&o.pprof, "pprof", false, "also serve Go profiles at /debug/pprof/ on the metrics address")
	return cmd
}

func runController(ctx context.Context, o controllerOptions, cluster config.Cluster) error {
	log, err := newLogger(o.logLevel)
	if err != nil {
		return err
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", o.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	restCfg.QPS, restCfg.Burst = o.kubeQPS, int(2*o.kubeQPS)
	// Protobuf instead of JSON for core objects: a third of the CPU per pod event at scale.
	restCfg.ContentType = "application/vnd.kubernetes.protobuf"
	restCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	kube, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return err
	}
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: kube.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	recorder := broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kovn-controller"})

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if o.metricsAddress != "" {
		go serveMetrics(ctx, o.metricsAddress, reg, o.pprof, log)
	}
	run := func(ctx context.Context) error {
		nb, err := ovndb.ConnectNB(ctx, ovndb.Config{Address: o.nbAddress, Reconnect: true, Logger: log})
		if err != nil {
			return err
		}
		defer nb.Close()
		c, err := controller.New(controller.Config{
			Cluster: cluster, NB: nb, Kube: kube, Recorder: recorder, PodWorkers: o.podWorkers, ACLLogRate: o.aclLogRate, Logger: log, Metrics: reg,
		})
		if err != nil {
			return err
		}
		return c.Run(ctx)
	}
	if !o.leaderElect {
		return run(ctx)
	}
	host, _ := os.Hostname()
	le := controller.LeaderElection{Namespace: o.leaseNamespace, Name: "kovn-controller", Identity: host + "_" + uuid.NewString()[:8]}
	var runErr error
	err = controller.RunAsLeader(ctx, kube, le, log, func(ctx context.Context) {
		runErr = run(ctx)
	})
	if runErr != nil {
		return runErr
	}
	return err
}

func serveMetrics(ctx context.Context, addr string, reg *prometheus.Registry, profiles bool, log *slog.Logger) {
	mux := http.NewServeMux()
	if profiles {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); _ = srv.Close() }()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server stopped", "addr", addr, "err", err)
	}
}
