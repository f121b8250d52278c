"""The recorder's live face: what the array is doing now, for people and for Prometheus.

    readings ──▶ LatestReadings (latest.py) ──▶ LiveData.snapshot() (snapshot.py)
                                                   ├──▶ /metrics      (metrics.py, prometheus_client)
                                                   ├──▶ /api/status   (status.py, JSON)
                                                   └──▶ /             (page.py, status.html)
                                 served by LiveServer (server.py), a read-only HTTP thread

The read loop hands each batch of new readings to `LatestReadings` with one cheap call; every
rendering happens on the HTTP server's threads from a copy taken under a short lock, so a slow
or greedy client can never hold up reading the bus or writing the outbox. Only `latest.py` and
`address.py` are imported by the rest of the recorder; the others (and `prometheus_client`) are
imported when `--http` is on.
"""
