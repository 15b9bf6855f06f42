package annotations

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPodNetworkRoundTrip(t *testing.T) {
	n := PodNetwork{
		IPs:      []netip.Prefix{netip.MustParsePrefix("10.244.1.5/24")},
		MAC:      "0a:58:0a:f4:01:05",
		Gateways: []netip.Addr{netip.MustParseAddr("10.244.1.1")},
		MTU:      1400,
	}
	s, err := MarshalPodNetwork(n)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := ParsePodNetwork(map[string]string{PodNetworks: s})
	if err != nil || !ok || got.IPs[0] != n.IPs[0] || got.MAC != n.MAC || got.Gateways[0] != n.Gateways[0] || got.MTU != 1400 {
		t.Fatalf("round trip: %+v %v %v (from %s)", got, ok, err, s)
	}
	if _, ok, err := ParsePodNetwork(nil); ok || err != nil {
		t.Fatalf("no annotation: ok=%v err=%v", ok, err)
	}
}

func TestPodNetworkRejectsMalformed(t *testing.T) {
	for name, tc := range map[string]struct{ value, want string }{
		"not json":        {`{`, "unexpected end"},
		"no default":      {`{"other":{}}`, `no "default" network`},
		"no ips":          {`{"default":{"mac_address":"0a:58:0a:f4:01:05"}}`, "no ip_addresses"},
		"bad ip":          {`{"default":{"ip_addresses":["10.244.1.500/24"],"mac_address":"0a:58:0a:f4:01:05"}}`, "ParseAddr"},
		"bad mac":         {`{"default":{"ip_addresses":["10.244.1.5/24"],"mac_address":"zz"}}`, "not an Ethernet MAC"},
		"multicast mac":   {`{"default":{"ip_addresses":["10.244.1.5/24"],"mac_address":"01:00:5e:00:00:01"}}`, "multicast"},
		"foreign gateway": {`{"default":{"ip_addresses":["10.244.1.5/24"],"mac_address":"0a:58:0a:f4:01:05","gateway_ips":["10.9.9.1"]}}`, "not on the pod's subnet"},
	} {
		_, ok, err := ParsePodNetwork(map[string]string{PodNetworks: tc.value})
		if err == nil || ok || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), PodNetworks) {
			t.Errorf("%s: got ok=%v err=%v, want an error containing %q and the annotation name", name, ok, err, tc.want)
		}
	}
}

func TestNodeSubnet(t *testing.T) {
	p := netip.MustParsePrefix("10.244.3.0/24")
	got, ok, err := ParseNodeSubnet(map[string]string{NodeSubnets: MarshalNodeSubnet(p)})
	if err != nil || !ok || got != p {
		t.Fatalf("round trip: %v %v %v", got, ok, err)
	}
	for _, bad := range []string{`nope`, `{"default":[]}`, `{"default":["10.244.3.1/24"]}`, `{"default":["x"]}`} {
		if _, _, err := ParseNodeSubnet(map[string]string{NodeSubnets: bad}); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func TestStaticRequest(t *testing.T) {
	r, err := ParseStaticRequest(map[string]string{RequestedIP: " 10.244.1.50 ", RequestedMAC: "0A:58:0A:F4:01:32"})
	if err != nil || r.IP.String() != "10.244.1.50" || r.MAC != "0a:58:0a:f4:01:32" {
		t.Fatalf("got %+v %v", r, err)
	}
	for _, bad := range []map[string]string{
		{RequestedIP: "10.244.1"},
		{RequestedIP: "fd00::1"},
		{RequestedMAC: "ff:ff:ff:ff:ff:ff"},
		{RequestedMAC: "00:00:00:00:00:00"},
		{RequestedMAC: "0a:58"},
	} {
		if _, err := ParseStaticRequest(bad); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
}
