// Package clientaddr keys a client's network address for the limits and bans that count per
// address: the address itself for IPv4, its /64 network for IPv6, where one host usually holds a
// whole /64. The client-authentication throttle and the sign-in regulation share it, so both count
// an IPv6 host the same way.
package clientaddr

import "net/netip"

// Key is the key of a client address: the address for IPv4 (and IPv4-mapped IPv6), its /64
// network for IPv6.
func Key(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}

// KeyOf is Key of an address in text form; text that is not an address is its own key.
func KeyOf(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	return Key(a)
}
