// Package openflow owns kovn's OpenFlow 1.3 wire encoding and the connection to a bridge's management socket
// (<OVS_RUNDIR>/<bridge>.mgmt, served by ovs-vswitchd). It implements only what kovn needs: flow mods whose
// matches and actions include the Nicira conntrack extensions (ct_state, ct_mark, the ct action), a flow dump
// filtered by cookie, barriers and echo. It never runs ovs-ofctl.
package openflow
