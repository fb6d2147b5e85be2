-- Run once by Patroni's post_bootstrap on the first primary (cloud_init/render.py).
-- The application role gets a SCRAM verifier, never a plaintext password.
CREATE ROLE app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD 'SCRAM-SHA-256$4096:kQvOYw00YdYuThPd6ouSmQ==$oeN7qQGOn/7Zk6q9YINw4GK/dB4tTpdMCTXkiKylMYo=:MyjlXcWyKEFwQX5yTpfnJAr8PuuNmgYW++rbHMGpesI=';
CREATE DATABASE app OWNER app;
REVOKE ALL ON DATABASE app FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE app TO app;
-- The exporters' role: statistics only (pg_monitor), peer-authenticated over the local socket.
CREATE ROLE pgha_monitor LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION IN ROLE pg_monitor;
