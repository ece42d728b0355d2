package oidcprovider

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portcullis-auth/portcullis/internal/pgtest"
	"github.com/portcullis-auth/portcullis/oidcprovider/store/postgres"
)

// The example's setup.sql, run with psql as its comment says, makes a role that can open the
// store: the provider creates its table as that role.
func TestClusterExampleSetupSQL(t *testing.T) {
	srv := pgtest.Start(t)
	bin, err := pgtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	psql := filepath.Join(bin, "psql")
	if _, err := os.Stat(psql); err != nil {
		psql = "psql"
	}
	sql, err := os.ReadFile("../examples/cluster/setup.sql")
	if err != nil {
		t.Fatal(err)
	}
	// the throwaway server's superuser is called portcullis: give the example's role and
	// database another name
	script := filepath.Join(t.TempDir(), "setup.sql")
	if err := os.WriteFile(script, []byte(strings.ReplaceAll(string(sql), "portcullis", "node_role")), 0o644); err != nil {
		t.Fatal(err)
	}
	const password = "c0ffee-pass'word" // a quote, which :'password' must escape
	cmd := exec.Command(psql, "-v", "ON_ERROR_STOP=1", "-v", "password="+password, "-f", script, srv.DSN("postgres"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("psql -f setup.sql: %v\n%s", err, out)
	}
	st, err := postgres.Open(t.Context(), postgres.Config{
		Address:  fmt.Sprintf("tcp://%s:%d", srv.Host, srv.Port),
		Database: "node_role",
		Username: "node_role",
		Password: password,
	}, nil)
	if err != nil {
		t.Fatalf("opening the store as the example's role: %v", err)
	}
	defer st.Destruct()
	if err := st.Put(t.Context()); err != nil {
		t.Fatal(err)
	}
	v, err := st.GetOrCreate(t.Context(), []byte("meta/x"), func() ([]byte, error) { return []byte("y"), nil })
	if err != nil || string(v) != "y" {
		t.Fatalf("a write as the example's role: %q %v", v, err)
	}
}
