package pgtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestServerStartsStopsAndComesBack starts a server, queries a fresh database over TCP with the
// password, stops it (a query then fails) and starts it again (the data is still there).
func TestServerStartsStopsAndComesBack(t *testing.T) {
	s := Start(t)
	dsn := s.Database(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a query succeeded while the server was stopped")
	}
	s.StartAgain()
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v int
	if err := conn.QueryRow(ctx, "SELECT v FROM kept").Scan(&v); err != nil || v != 7 {
		t.Fatalf("after restart: v=%d err=%v", v, err)
	}
	if _, err := pgx.Connect(ctx, "postgres://portcullis:wrong@"+s.Host+":"+itoa(s.Port)+"/portcullis?sslmode=disable"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
}

func itoa(i int) string { return fmt.Sprint(i) }
