package oidcprovider_test

import (
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// The cluster example's Caddyfile is formatted as caddy fmt wants and passes caddy validate with
// no database to reach; it keeps its records in PostgreSQL.
func TestClusterExampleValidates(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Chdir("..")
	const f = "examples/cluster/Caddyfile"
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if formatted := caddyfile.Format(data); string(formatted) != string(data) {
		t.Errorf("%s is not formatted; run: caddy fmt --overwrite %s", f, f)
	}
	if !strings.Contains(string(data), "\t\tstorage postgres {\n") {
		t.Errorf("%s does not use storage postgres", f)
	}
	cfg := strings.Replace(string(data), "{\n", "{\n\tadmin off\n", 1)
	cfg = strings.ReplaceAll(cfg, "/etc/caddy/users.yml", "users.example.yml")
	if err := validate(t, cfg); err != nil {
		t.Fatalf("%s: %v", f, err)
	}
}
