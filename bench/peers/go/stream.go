// bench/peers/go/stream.go: the Go stream reader, the peer of longpoll's stream mode.
//
//	go_peer stream -fmt ndjson|sse -url http://127.0.0.1:18080/stream.ndjson [-n RUNS]
//	    GETs the URL (a long NDJSON or SSE body) RUNS times after one warm-up. ndjson:
//	    bufio.Scanner lines, each decoded with encoding/json into interface{}. sse: the
//	    same Scanner, "data:" lines joined with LF, decoded at each blank line (the
//	    standard library has no SSE reader; this is the least one needs). Prints the
//	    best run:  RESULT go_stream_<fmt> msgs= msg_s= mib_s= ms=
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// countingReader counts the body bytes the scanner reads.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n += int64(k)
	return k, err
}

func streamOnce(client *http.Client, url, format string) (msgs int, nbytes int64, d time.Duration) {
	t0 := time.Now()
	resp, err := client.Get(url)
	if err != nil {
		die("stream: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		die("stream: HTTP %d", resp.StatusCode)
	}
	body := &countingReader{r: resp.Body}
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	var v interface{}
	var data []byte
	ndata := 0
	for sc.Scan() {
		line := sc.Bytes()
		if format == "ndjson" {
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			if err := json.Unmarshal(line, &v); err != nil {
				die("stream: decode: %v", err)
			}
			msgs++
			continue
		}
		switch {
		case len(line) == 0:
			if ndata > 0 {
				if err := json.Unmarshal(data, &v); err != nil {
					die("stream: decode: %v", err)
				}
				msgs++
			}
			data, ndata = data[:0], 0
		case bytes.HasPrefix(line, []byte("data:")):
			val := bytes.TrimPrefix(line[5:], []byte(" "))
			if ndata > 0 {
				data = append(data, '\n')
			}
			data = append(data, val...)
			ndata++
		}
	}
	if err := sc.Err(); err != nil {
		die("stream: %v", err)
	}
	return msgs, body.n, time.Since(t0)
}

func cmdStream(runs int, url, format string) {
	if format != "ndjson" && format != "sse" {
		die("stream: -fmt must be ndjson or sse")
	}
	client := newClient(1)
	streamOnce(client, url, format) // warm-up
	best := time.Duration(-1)
	var msgs int
	var nbytes int64
	for i := 0; i < runs; i++ {
		m, b, d := streamOnce(client, url, format)
		if best < 0 || d < best {
			best, msgs, nbytes = d, m, b
		}
	}
	s := best.Seconds()
	fmt.Printf("RESULT go_stream_%s msgs=%d msg_s=%.0f mib_s=%.1f ms=%.1f\n",
		format, msgs, float64(msgs)/s, float64(nbytes)/(1<<20)/s, s*1e3)
}
