package network

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/containernetworking/cni/libcni"

	"github.com/gantry-dev/gantry/errdefs"
)

// Defaults for Options fields left empty.
const (
	DefaultNetNSDir    = "/run/gantry/netns"
	DefaultBridge      = "gantry0"
	DefaultSubnet      = "10.88.0.0/16"
	DefaultNetworkName = "gantry"
	DefaultCacheDir    = "/var/lib/gantry/cni"
)

// DefaultPluginDirs are searched for CNI plugins when Options.PluginDirs is
// empty: Debian's containernetworking-plugins, then the upstream location.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

const (
	// cniVersion is the newest spec version Debian bookworm's plugins
	// (1.1.1) speak.
	cniVersion = "1.0.0"
	// ifName is the interface name inside every namespace.
	ifName = "eth0"
	// maxIDLen bounds instance ids. Chain names are hashed by the plugins
	// and veth names are random, so the limit only keeps file names, cache
	// keys and iptables comments (256 bytes max) comfortably short. It must
	// fit the longest instance id: a 63-character service name, a slot of
	// up to 3 digits and a 6-character suffix (74).
	maxIDLen = 128
	// capPortNames is a capability key no plugin declares: libcni passes
	// only declared capabilities to plugins but caches all of them, which
	// lets Attachment give back the port names after a restart.
	capPortNames = "io.gantry.portNames"
)

var requiredPlugins = []string{"bridge", "host-local", "portmap", "loopback"}

// idPattern is the CNI container id grammar, which also makes safe file names.
var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

func (o *Options) setDefaults() {
	if len(o.PluginDirs) == 0 {
		o.PluginDirs = DefaultPluginDirs
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir
	}
	if o.NetNSDir == "" {
		o.NetNSDir = DefaultNetNSDir
	}
	if o.Bridge == "" {
		o.Bridge = DefaultBridge
	}
	if o.Subnet == "" {
		o.Subnet = DefaultSubnet
	}
	if o.NetworkName == "" {
		o.NetworkName = DefaultNetworkName
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

func (o *Options) validate() error {
	if !idPattern.MatchString(o.NetworkName) || len(o.NetworkName) > 32 {
		return fmt.Errorf("network: NetworkName %q must be 1-32 letters, digits, '_', '.' or '-', starting with a letter or digit: %w", o.NetworkName, errdefs.ErrInvalid)
	}
	if len(o.Bridge) > 15 || strings.ContainsAny(o.Bridge, "/ \t\n:") || o.Bridge == "." || o.Bridge == ".." {
		return fmt.Errorf("network: Bridge %q is not a valid interface name (at most 15 characters, no '/', ':' or spaces): %w", o.Bridge, errdefs.ErrInvalid)
	}
	ip, ipnet, err := net.ParseCIDR(o.Subnet)
	if err != nil || ip.To4() == nil {
		return fmt.Errorf("network: Subnet %q must be an IPv4 CIDR such as 10.88.0.0/16: %w", o.Subnet, errdefs.ErrInvalid)
	}
	if ones, _ := ipnet.Mask.Size(); ones > 29 {
		return fmt.Errorf("network: Subnet %q is too small; use a prefix of /29 or shorter: %w", o.Subnet, errdefs.ErrInvalid)
	}
	o.Subnet = ipnet.String()
	for _, d := range []string{o.CacheDir, o.NetNSDir} {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("network: directory %q must be an absolute path: %w", d, errdefs.ErrInvalid)
		}
	}
	return nil
}

// checkHost verifies that the plugins and iptables are installed.
func checkHost(pluginDirs []string) error {
	var missing []string
	for _, p := range requiredPlugins {
		found := false
		for _, d := range pluginDirs {
			if st, err := os.Stat(filepath.Join(d, p)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return errdefs.WithHint(
			fmt.Errorf("network: CNI plugins %s not found in %s: %w", strings.Join(missing, ", "), strings.Join(pluginDirs, ", "), errdefs.ErrUnavailable),
			"install the Debian package containernetworking-plugins (apt-get install containernetworking-plugins) or point PluginDirs at the plugin binaries")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return errdefs.WithHint(
			fmt.Errorf("network: iptables not found on PATH (the bridge and portmap plugins need it): %w", errdefs.ErrUnavailable),
			"install the Debian package iptables (apt-get install iptables)")
	}
	return nil
}

// enableIPForward turns on IPv4 forwarding, without which published ports
// and outbound traffic from instances do not work.
func enableIPForward() error {
	const p = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(p)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(p, []byte("1"), 0o644); err != nil {
		return errdefs.WithHint(fmt.Errorf("network: enable IPv4 forwarding: %w", err),
			"run gantry as root, or set net.ipv4.ip_forward=1 with sysctl")
	}
	return nil
}

// buildConfList renders the network configuration: a bridge with host-local
// IPAM, portmap for published ports, loopback for lo. Masquerading is one
// rule per network installed by New (see masqueradeRule), not the plugin's.
// loopback passes the bridge result through unchanged, so it can run in the
// same list and share its cache entry and DEL.
func buildConfList(o Options) (*libcni.NetworkConfigList, error) {
	conf := map[string]any{
		"cniVersion": cniVersion,
		"name":       o.NetworkName,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      o.Bridge,
				"isGateway":   true,
				"ipMasq":      false, // see masqueradeRule
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": o.Subnet}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": filepath.Join(o.CacheDir, "networks"),
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
			},
			map[string]any{"type": "loopback"},
		},
	}
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, fmt.Errorf("network: encode CNI config: %w", err)
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("network: parse CNI config: %w", err)
	}
	return list, nil
}

// validateID checks an instance id for use as a file name and CNI
// container id.
func validateID(id string) error {
	if id == "" || len(id) > maxIDLen || !idPattern.MatchString(id) {
		return fmt.Errorf("network: id %q must be 1-%d letters, digits, '_', '.' or '-', starting with a letter or digit: %w", id, maxIDLen, errdefs.ErrInvalid)
	}
	return nil
}

// normalizePorts validates ports and returns a copy with protocols
// lower-cased and defaulted to tcp.
func normalizePorts(ports []PortMapping) ([]PortMapping, error) {
	out := make([]PortMapping, 0, len(ports))
	seen := map[string]bool{}
	for i, p := range ports {
		field := fmt.Sprintf("ports[%d]", i)
		if p.Name != "" {
			field = fmt.Sprintf("ports[%d] (%s)", i, p.Name)
		}
		p.Protocol = strings.ToLower(p.Protocol)
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return nil, fmt.Errorf("network: %s.protocol %q must be tcp or udp: %w", field, p.Protocol, errdefs.ErrInvalid)
		}
		if p.HostPort < 1 || p.HostPort > 65535 {
			return nil, fmt.Errorf("network: %s.hostPort %d must be between 1 and 65535: %w", field, p.HostPort, errdefs.ErrInvalid)
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("network: %s.containerPort %d must be between 1 and 65535: %w", field, p.ContainerPort, errdefs.ErrInvalid)
		}
		key := portKey(p.HostPort, p.Protocol)
		if seen[key] {
			return nil, fmt.Errorf("network: %s.hostPort %d/%s is published twice: %w", field, p.HostPort, p.Protocol, errdefs.ErrInvalid)
		}
		seen[key] = true
		out = append(out, p)
	}
	return out, nil
}

func portKey(port int, proto string) string { return fmt.Sprintf("%d/%s", port, proto) }

// capabilityArgs turns ports into libcni runtime capability arguments.
func capabilityArgs(ports []PortMapping) map[string]any {
	maps := make([]map[string]any, 0, len(ports))
	names := make([]string, 0, len(ports))
	for _, p := range ports {
		maps = append(maps, map[string]any{
			"hostPort":      p.HostPort,
			"containerPort": p.ContainerPort,
			"protocol":      p.Protocol,
		})
		names = append(names, p.Name)
	}
	return map[string]any{"portMappings": maps, capPortNames: names}
}

// portsFromCapabilityArgs is the inverse of capabilityArgs, for args read
// back from the libcni cache (JSON-decoded, so numbers are float64).
func portsFromCapabilityArgs(args map[string]any) []PortMapping {
	var maps []struct {
		HostPort      int    `json:"hostPort"`
		ContainerPort int    `json:"containerPort"`
		Protocol      string `json:"protocol"`
	}
	var names []string
	if b, err := json.Marshal(args["portMappings"]); err == nil {
		_ = json.Unmarshal(b, &maps)
	}
	if b, err := json.Marshal(args[capPortNames]); err == nil {
		_ = json.Unmarshal(b, &names)
	}
	ports := make([]PortMapping, 0, len(maps))
	for i, pm := range maps {
		p := PortMapping{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: pm.Protocol}
		if i < len(names) {
			p.Name = names[i]
		}
		ports = append(ports, p)
	}
	return ports
}
