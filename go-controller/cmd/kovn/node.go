package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kovn-io/kovn/go-controller/pkg/cniapi"
	"github.com/kovn-io/kovn/go-controller/pkg/config"
	"github.com/kovn-io/kovn/go-controller/pkg/nodeagent"
)

func newNodeCommand() *cobra.Command {
	var (
		cluster    config.Flags
		cfg        nodeagent.Config
		kubeconfig string
		logLevel   string
		gwFlags    gatewayFlags
	)
	self, _ := os.Executable()
	cmd := &cobra.Command{
		Use:   "node",
		Short: "run the node agent: local OVS for OVN, management port, CNI server and plugin",
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cluster.Resolve(cmd.Flags())
			if err != nil {
				return err
			}
			if cfg.NodeName == "" {
				return fmt.Errorf("--node-name is required")
			}
			if err := gwFlags.apply(&cfg); err != nil {
				return err
			}
			if cfg.OVS.EncapIP == "" && cfg.Gateway == nil {
				return fmt.Errorf("--encap-ip is required without a gateway: the node's address other nodes tunnel to")
			}
			if cfg.OVS.OVNRemote == "" {
				return fmt.Errorf("--ovn-remote is required: the OVN Southbound database, e.g. tcp:10.0.0.1:6642")
			}
			log, err := newLogger(logLevel)
			if err != nil {
				return err
			}
			restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
			if err != nil {
				return fmt.Errorf("kubeconfig: %w", err)
			}
			restCfg.ContentType = "application/vnd.kubernetes.protobuf"
			kube, err := kubernetes.NewForConfig(restCfg)
			if err != nil {
				return err
			}
			cfg.Cluster, cfg.Kube, cfg.Logger = c, kube, log.With("component", "node")
			return nodeagent.Run(cmd.Context(), cfg)
		},
	}
	fs := cmd.Flags()
	cluster.AddFlags(fs)
	fs.StringVar(&kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig file (empty: in-cluster config)")
	fs.StringVar(&cfg.NodeName, "node-name", os.Getenv("KOVN_NODE_NAME"), "this node's name")
	fs.StringVar(&cfg.OVSRemote, "ovs-address", "unix:/var/run/openvswitch/db.sock", "the local Open_vSwitch database")
	fs.StringVar(&cfg.OVS.OVNRemote, "ovn-remote", "", "OVN Southbound database for ovn-controller, e.g. tcp:10.0.0.1:6642")
	fs.StringVar(&cfg.OVS.EncapIP, "encap-ip", "", "this node's tunnel endpoint address")
	fs.StringVar(&cfg.OVS.Bridge, "bridge", "br-int", "the integration bridge")
	fs.StringVar(&cfg.OVS.DatapathType, "datapath-type", "system", "OVS datapath: system (kernel) or netdev (userspace)")
	fs.StringVar(&cfg.HostNetns, "host-netns", "", "network namespace of the node (default: the agent's own)")
	fs.StringVar(&cfg.ManagementPort, "management-port", "kovn-mp0", "name of the management interface")
	fs.StringVar(&cfg.CNISocket, "cni-socket", cniapi.DefaultSocket, "CNI server socket (root only)")
	fs.StringVar(&cfg.CNIConfFile, "cni-conf-file", "/etc/cni/net.d/10-kovn.conflist", "where to write the CNI config (empty: do not)")
	fs.StringVar(&cfg.CNIBinDir, "cni-bin-dir", "/opt/cni/bin", "where to install kovn-cni (empty: do not)")
	fs.StringVar(&cfg.CNIPluginPath, "cni-plugin", filepath.Join(filepath.Dir(self), "kovn-cni"), "the kovn-cni binary to install")
	fs.StringVar(&cfg.MetricsAddress, "metrics-address", ":9476", "address for /metrics, /healthz and /readyz (empty: off)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	gwFlags.add(fs)
	cmd.AddCommand(newNodeTeardownCommand())
	return cmd
}
