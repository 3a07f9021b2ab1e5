-- The replicas initialised their own empty 'rwsplit' database: drop local GTIDs so that
-- auto-positioning replays the primary's history from the start.
RESET MASTER;
CHANGE REPLICATION SOURCE TO SOURCE_HOST='primary', SOURCE_PORT=3306, SOURCE_USER='repl',
  SOURCE_PASSWORD='repl-sandbox', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1;
START REPLICA;
