// Package healthcheck serves the per-service health checks that kube-proxy serves and kovn replaces: for every
// LoadBalancer Service with externalTrafficPolicy Local, an HTTP server on the node's spec.healthCheckNodePort
// answers 200 while the node has a ready endpoint of the service and 503 otherwise, so that an external load
// balancer sends traffic only to nodes that can serve it without leaving the node. The body is kube-proxy's:
// {"service":{"namespace":...,"name":...},"localEndpoints":N,"serviceProxyHealthy":true}.
//
// Desired computes what to serve from Services and EndpointSlices (pure); Server serves it.
package healthcheck

import (
	"cmp"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Status is what one health-check port reports.
type Status struct {
	Namespace, Name string
	LocalEndpoints  int
}

// Desired returns, per health-check node port, the service it reports on and how many ready endpoints of it
// run on node. Services without a health-check port (not LoadBalancer, or externalTrafficPolicy Cluster) have
// none; an endpoint address listed in several slices counts once.
func Desired(services []*corev1.Service, slices []*discoveryv1.EndpointSlice, node string) map[uint16]Status {
	local := map[string]map[string]bool{} // namespace/name -> ready local addresses
	for _, s := range slices {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if svc == "" {
			continue
		}
		key := s.Namespace + "/" + svc
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || *ep.NodeName != node || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
				continue
			}
			if local[key] == nil {
				local[key] = map[string]bool{}
			}
			for _, a := range ep.Addresses {
				local[key][a] = true
			}
		}
	}
	out := map[uint16]Status{}
	for _, svc := range services {
		port := svc.Spec.HealthCheckNodePort
		if svc.Spec.Type != corev1.ServiceTypeLoadBalancer || port <= 0 || port > 65535 ||
			svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
			continue
		}
		out[uint16(port)] = Status{Namespace: svc.Namespace, Name: svc.Name,
			LocalEndpoints: len(local[svc.Namespace+"/"+svc.Name])}
	}
	return out
}

// Listen opens the TCP listener of a health-check port (the node agent opens it in the node's namespace).
type Listen func(port uint16) (net.Listener, error)

// Server serves the health-check ports. Sync opens and closes ports; their answers change at once.
type Server struct {
	listen Listen
	log    *slog.Logger

	mu      sync.Mutex
	status  map[uint16]Status
	servers map[uint16]*http.Server
}

// NewServer returns a server that opens its ports with listen.
func NewServer(listen Listen, log *slog.Logger) *Server {
	return &Server{listen: listen, log: log, status: map[uint16]Status{}, servers: map[uint16]*http.Server{}}
}

// Sync serves exactly desired: ports no longer wanted are closed, new ones opened. A port that cannot be
// opened (taken by another process) is reported in the error and tried again by the next Sync; the other ports
// are served meanwhile.
func (s *Server) Sync(desired map[uint16]Status) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for port, srv := range s.servers {
		if _, ok := desired[port]; !ok {
			_ = srv.Close()
			delete(s.servers, port)
		}
	}
	s.status = desired
	var failed []string
	for _, port := range sortedPorts(desired) {
		if s.servers[port] != nil {
			continue
		}
		ln, err := s.listen(port)
		if err != nil {
			failed = append(failed, fmt.Sprintf("%d (%s/%s): %v", port, desired[port].Namespace, desired[port].Name, err))
			continue
		}
		srv := &http.Server{Handler: s.handler(port), ReadHeaderTimeout: 5 * time.Second}
		s.servers[port] = srv
		go func() {
			if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
				s.log.Warn("health-check port stopped", "port", port, "err", err)
			}
		}()
	}
	if len(failed) > 0 {
		return fmt.Errorf("healthcheck: cannot open ports %v", failed)
	}
	return nil
}

// Close stops every port.
func (s *Server) Close() {
	_ = s.Sync(nil)
}

// Ports returns the ports being served.
func (s *Server) Ports() []uint16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint16, 0, len(s.servers))
	for p := range s.servers {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

type body struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (s *Server) handler(port uint16) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		st, ok := s.status[port]
		s.mu.Unlock()
		if !ok {
			http.Error(w, "no service on this health-check port", http.StatusNotFound)
			return
		}
		var b body
		b.Service.Namespace, b.Service.Name = st.Namespace, st.Name
		b.LocalEndpoints, b.ServiceProxyHealthy = st.LocalEndpoints, true
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(st.LocalEndpoints))
		if st.LocalEndpoints == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(b)
	})
}

func sortedPorts(m map[uint16]Status) []uint16 {
	out := make([]uint16, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	slices.SortFunc(out, cmp.Compare)
	return out
}
