package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func resolve(t *testing.T, args ...string) (Cluster, error) {
	t.Helper()
	var f Flags
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.Resolve(fs)
}

func TestDefaultsAreValid(t *testing.T) {
	c, err := resolve(t)
	if err != nil {
		t.Fatal(err)
	}
	if c.PodMTU() != 1400 || c.ClusterCIDRs[0].String() != "10.244.0.0/16/24" {
		t.Fatalf("defaults: %+v mtu %d", c, c.PodMTU())
	}
}

func TestFlagsAndFile(t *testing.T) {
	c, err := resolve(t, "--cluster-cidrs=10.128.0.0/14/23,10.200.0.0/16", "--encap=vxlan", "--mtu=9000")
	if err != nil {
		t.Fatal(err)
	}
	if len(c.ClusterCIDRs) != 2 || c.ClusterCIDRs[0].HostPrefixLen != 23 || c.ClusterCIDRs[1].HostPrefixLen != 24 || c.PodMTU() != 8950 {
		t.Fatalf("got %+v", c)
	}
	file := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(file, []byte(`{"clusterCIDRs":[{"cidr":"10.10.0.0/16","hostPrefixLength":26}],"serviceCIDRs":["10.20.0.0/16"],"joinSubnet":"100.65.0.0/16","encap":"geneve","mtu":1500}`), 0o600)
	c, err = resolve(t, "--config="+file, "--mtu=1450")
	if err != nil {
		t.Fatal(err)
	}
	if c.ClusterCIDRs[0].HostPrefixLen != 26 || c.JoinSubnet.String() != "100.65.0.0/16" || c.MTU != 1450 {
		t.Fatalf("file + flag override: %+v", c)
	}
}

func TestInvalidConfigSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster-cidrs=10.244.0.0/33"}, "cluster CIDR"},
		{[]string{"--cluster-cidrs=10.244.0.1/16"}, "not a network address"},
		{[]string{"--cluster-cidrs=10.244.0.0/16/16"}, "node subnet length"},
		{[]string{"--cluster-cidrs=10.244.0.0/16/31"}, "node subnet length"},
		{[]string{"--service-cidrs=10.244.0.0/20"}, "overlap"},
		{[]string{"--join-subnet=10.244.0.0/16"}, "overlap"},
		{[]string{"--encap=gre"}, "encap"},
		{[]string{"--mtu=500"}, "MTU"},
		{[]string{"--config=/nonexistent.json"}, "read config"},
	} {
		_, err := resolve(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}
