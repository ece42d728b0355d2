-- PostgreSQL for a Portcullis cluster: a role and a database of its own. Run it as the database
-- server's superuser, with the password the nodes will use:
--   PORTCULLIS_DB_PASSWORD=$(openssl rand -hex 24)
--   sudo -u postgres psql -v password="$PORTCULLIS_DB_PASSWORD" -f setup.sql
-- Portcullis creates and migrates its tables itself when the first node starts (nodes starting
-- together take turns); nobody runs DDL by hand.
CREATE ROLE portcullis LOGIN PASSWORD :'password';
-- The role owns the database, so it may create the schema named by storage postgres { schema … }
-- (public by default) and its table. Nothing else needs granting.
CREATE DATABASE portcullis OWNER portcullis;
