package postgres

import (
	"testing"

	"github.com/portcullis-auth/portcullis/oidcprovider/store/storetest"
)

// The PostgreSQL store keeps the store's contract, as the Badger store does (its package runs the
// same suite).
func TestContract(t *testing.T) {
	srv := newServer(t)
	storetest.Run(t, func(t *testing.T) storetest.Store {
		return openDSN(t, srv.Database(t), options{})
	})
}

// Two stores on one database behave as one store.
func TestContractShared(t *testing.T) {
	srv := newServer(t)
	storetest.RunShared(t, func(t *testing.T) (a, b storetest.Store) {
		dsn := srv.Database(t)
		return openDSN(t, dsn, options{}), openDSN(t, dsn, options{})
	})
}
