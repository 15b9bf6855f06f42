package services

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestWarnings(t *testing.T) {
	ten := int32(10)
	for _, tc := range []struct {
		name string
		spec corev1.ServiceSpec
		want string // substring of the only warning; "" for none
	}{
		{"no affinity", corev1.ServiceSpec{SessionAffinity: corev1.ServiceAffinityNone}, ""},
		{"affinity unset", corev1.ServiceSpec{}, ""},
		{"ClientIP default timeout", corev1.ServiceSpec{SessionAffinity: corev1.ServiceAffinityClientIP}, "the 10800 s timeout is not enforced"},
		{"ClientIP with timeout", corev1.ServiceSpec{SessionAffinity: corev1.ServiceAffinityClientIP,
			SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &ten}}},
			"the 10 s timeout is not enforced"},
		{"ClientIP with empty config", corev1.ServiceSpec{SessionAffinity: corev1.ServiceAffinityClientIP,
			SessionAffinityConfig: &corev1.SessionAffinityConfig{}}, "the 10800 s timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Warnings(&corev1.Service{Spec: tc.spec})
			switch {
			case tc.want == "" && len(got) != 0:
				t.Errorf("warnings %q, want none", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0], tc.want)):
				t.Errorf("warnings %q, want one containing %q", got, tc.want)
			}
		})
	}
}
