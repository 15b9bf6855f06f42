package annotations

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Policy annotation keys (on Namespaces).
const (
	// Isolation "true" isolates a namespace: its pods accept traffic only from pods of the same namespace,
	// unless a NetworkPolicy allows more.
	Isolation = "kovn.io/isolation"
	// ACLLogging turns on OVN ACL logging for the namespace's policies: {"allow":"info","deny":"warning"}
	// (severities: alert, warning, notice, info, debug; a missing key logs nothing for that verdict).
	ACLLogging = "kovn.io/acl-logging"
)

// ParseIsolation reads a namespace's isolation setting; a malformed value is an error (and not isolated).
func ParseIsolation(annotations map[string]string) (on, set bool, err error) {
	return parseBool(annotations, Isolation)
}

// ACLLog is the logging a namespace asks for, by verdict ("" = none).
type ACLLog struct {
	Allow string `json:"allow,omitempty"`
	Deny  string `json:"deny,omitempty"`
}

var severities = map[string]bool{"alert": true, "warning": true, "notice": true, "info": true, "debug": true}

// ParseACLLogging reads a namespace's ACL logging setting.
func ParseACLLogging(annotations map[string]string) (ACLLog, bool, error) {
	raw, found := annotations[ACLLogging]
	if !found {
		return ACLLog{}, false, nil
	}
	var l ACLLog
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return ACLLog{}, false, fmt.Errorf("annotation %s: want {\"allow\":SEVERITY,\"deny\":SEVERITY}: %w", ACLLogging, err)
	}
	for _, s := range []string{l.Allow, l.Deny} {
		if s != "" && !severities[s] {
			return ACLLog{}, false, fmt.Errorf("annotation %s: severity %q: want alert, warning, notice, info or debug", ACLLogging, s)
		}
	}
	return l, true, nil
}
