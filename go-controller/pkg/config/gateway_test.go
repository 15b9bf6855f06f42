package config

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePortRange(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want PortRange
		err  string
	}{
		{"", PortRange{}, ""},
		{"20000-29999", PortRange{20000, 29999}, ""},
		{" 1 - 65535 ", PortRange{1, 65535}, ""},
		{"5-5", PortRange{5, 5}, ""},
		{"0-100", PortRange{}, "want 1 <= MIN"},
		{"200-100", PortRange{}, "want 1 <= MIN"},
		{"100", PortRange{}, "want MIN-MAX"},
		{"1-65536", PortRange{}, "numbers from 1 to 65535"},
		{"a-b", PortRange{}, "numbers"},
	} {
		got, err := ParsePortRange(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %v %v, want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestGatewayConfigFromJSONAndValidation(t *testing.T) {
	c := Default()
	if err := json.Unmarshal([]byte(`{"gateway":{"egressSNAT":false,"noSNATDestinations":["172.16.0.0/12"],"snatPortRange":"30000-39999"}}`), &c); err != nil {
		t.Fatal(err)
	}
	if c.Gateway.EgressSNAT || c.Gateway.SNATPortRange != (PortRange{30000, 39999}) || len(c.Gateway.NoSNATDestinations) != 1 {
		t.Fatalf("parsed %+v", c.Gateway)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !Default().Gateway.EgressSNAT {
		t.Fatal("egress SNAT is off by default")
	}
	if err := json.Unmarshal([]byte(`{"gateway":{"snatPortRange":"9-1"}}`), &c); err == nil {
		t.Fatal("bad port range accepted from JSON")
	}
	bad := Default()
	bad.Gateway.NoSNATDestinations = []netip.Prefix{netip.MustParsePrefix("172.16.0.1/12")}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "172.16.0.1/12") {
		t.Fatalf("non-network no-SNAT destination: %v", err)
	}
	// A /16 cluster CIDR with /28 node subnets has 4096 subnets: a /24 join subnet cannot address them.
	small := Default()
	small.ClusterCIDRs = []ClusterCIDR{{CIDR: netip.MustParsePrefix("10.244.0.0/16"), HostPrefixLen: 28}}
	small.JoinSubnet = netip.MustParsePrefix("100.64.0.0/24")
	if err := small.Validate(); err == nil || !strings.Contains(err.Error(), "join subnet") {
		t.Fatalf("join subnet too small: %v", err)
	}
}
