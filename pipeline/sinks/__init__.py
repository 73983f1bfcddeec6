"""Redis Streams sinks: client factory, embedded server, publisher and on-disk spool."""
