package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kovn-io/kovn/go-controller/pkg/sandbox"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/kubelet"
	"github.com/kovn-io/kovn/go-controller/pkg/sandbox/workload"
	"k8s.io/client-go/kubernetes"
)

func defaultSandboxDir() string {
	if d := os.Getenv("KOVN_SANDBOX_DIR"); d != "" {
		return d
	}
	return "/tmp/kovn-sandbox"
}

func newSandboxCommand() *cobra.Command {
	var dir string
	cmd := &cobra.Command{Use: "sandbox", Short: "a real multi-node kovn cluster on this machine"}
	cmd.PersistentFlags().StringVar(&dir, "state-dir", defaultSandboxDir(), "where the sandbox keeps its state ($KOVN_SANDBOX_DIR)")

	var o sandbox.Options
	up := &cobra.Command{Use: "up", Short: "create the sandbox and wait until every node is Ready",
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, _ := newLogger("info")
			o.Dir, o.Logger = dir, log
			s, err := sandbox.Up(cmd.Context(), o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "sandbox up: %d nodes (%s)\n  export KUBECONFIG=%s\n  kovn sandbox status | exec NS/POD -- CMD | probe NS/POD PROTO ADDR:PORT | down\n",
				len(s.Nodes), o.Encap, s.Kubeconfig)
			return nil
		}}
	up.Flags().IntVar(&o.Nodes, "nodes", 3, "number of nodes")
	up.Flags().StringVar(&o.Encap, "encap", "geneve", "tunnel type: geneve or vxlan")
	up.Flags().StringVar(&o.KubeBin, "kube-bin", os.Getenv("KOVN_KUBE_BIN"), "directory with etcd, kube-apiserver, kube-controller-manager, kube-scheduler")

	down := &cobra.Command{Use: "down", Short: "stop every sandbox process and delete its namespaces and state",
		RunE: func(*cobra.Command, []string) error {
			log, _ := newLogger("info")
			return sandbox.Down(dir, log)
		}}
	kubeconfig := &cobra.Command{Use: "kubeconfig", Short: "print the path of the sandbox's kubeconfig",
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sandbox.LoadState(dir)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), s.Kubeconfig)
			return nil
		}}
	status := &cobra.Command{Use: "status", Short: "show the sandbox's nodes and processes",
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := sandbox.LoadState(dir)
			if err != nil {
				return err
			}
			return sandbox.PrintStatus(cmd.OutOrStdout(), s)
		}}
	execCmd := &cobra.Command{Use: "exec NS/POD|external -- CMD [ARGS...]", Short: "run a command in a pod's (or the external host's) network namespace",
		Args: cobra.MinimumNArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			netns, err := sandbox.PodNetns(dir, args[0])
			if err != nil {
				return err
			}
			ip, err := exec.LookPath("ip")
			if err != nil {
				return err
			}
			return syscall.Exec(ip, append([]string{"ip", "netns", "exec", filepath.Base(netns)}, args[1:]...), os.Environ())
		}}
	var timeout time.Duration
	probe := &cobra.Command{Use: "probe NS/POD tcp|udp ADDR:PORT", Short: "ask from a pod whether ADDR:PORT answers, and what it saw",
		Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			netns, err := sandbox.PodNetns(dir, args[0])
			if err != nil {
				return err
			}
			var r workload.Reply
			err = ns.WithNetNSPath(netns, func(ns.NetNS) error {
				var perr error
				r, perr = workload.Probe(args[1], args[2], timeout)
				return perr
			})
			if err != nil {
				return fmt.Errorf("%s cannot reach %s over %s: %w", args[0], args[2], args[1], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s answered; it saw the client as %s\n", r.Name, r.Client)
			return nil
		}}
	probe.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "how long to wait for the answer")
	restart := &cobra.Command{Use: "restart PROCESS", Short: "restart one sandbox process (names as in status)",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pid, err := sandbox.Restart(dir, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s restarted (pid %d)\n", args[0], pid)
			return nil
		}}
	cmd.AddCommand(up, down, kubeconfig, status, execCmd, probe, restart, newKubeletCommand(), newWorkloadCommand())
	return cmd
}

func newKubeletCommand() *cobra.Command {
	var cfg kubelet.Config
	var kubeconfig string
	cmd := &cobra.Command{Use: "kubelet", Hidden: true, Short: "the sandbox's kubelet stand-in for one node",
		RunE: func(cmd *cobra.Command, _ []string) error {
			rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return err
			}
			if cfg.Kube, err = kubernetes.NewForConfig(rc); err != nil {
				return err
			}
			log, _ := newLogger("info")
			cfg.Logger = log.With("component", "kubelet")
			return kubelet.Run(cmd.Context(), cfg)
		}}
	cmd.Flags().StringVar(&cfg.NodeName, "node-name", "", "node name")
	cmd.Flags().StringVar(&cfg.NodeIP, "node-ip", "", "node InternalIP")
	cmd.Flags().StringVar(&cfg.Dir, "dir", "", "node directory (net.d, bin, state)")
	cmd.Flags().StringVar(&cfg.Kovn, "kovn", "", "kovn binary")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig")
	return cmd
}

func newWorkloadCommand() *cobra.Command {
	var name, tcp, udp string
	cmd := &cobra.Command{Use: "workload", Hidden: true, Short: "the test server a sandbox pod runs",
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := ports(tcp)
			if err != nil {
				return err
			}
			u, err := ports(udp)
			if err != nil {
				return err
			}
			return workload.Serve(cmd.Context(), name, t, u)
		}}
	cmd.Flags().StringVar(&name, "name", "", "pod name (namespace/name) to answer with")
	cmd.Flags().StringVar(&tcp, "tcp", "", "TCP ports, comma-separated")
	cmd.Flags().StringVar(&udp, "udp", "", "UDP ports, comma-separated")
	return cmd
}

func ports(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("bad port %q", f)
		}
		out = append(out, p)
	}
	return out, nil
}
