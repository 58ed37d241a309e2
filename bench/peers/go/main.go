// bench/peers/go/main.go: the Go peer (net/http + context), standard library only.
//
//	go_peer cancel  -n 1000  -url http://127.0.0.1:18080/sub/ID [-status URL] [-samples FILE]
//	    N requests held by the server, each with its own context.WithCancel, each on its own
//	    goroutine. Once all are held, one at a time: t0, cancel(), wait until that goroutine
//	    reports context.Canceled, t1. Prints p50/p99/max of t1-t0 in µs; -samples writes
//	    every latency (µs, one per line).
//	go_peer seq     -n 2000  -url http://127.0.0.1:18080/small.json
//	    N sequential GETs over one keep-alive connection, each body decoded with
//	    encoding/json into []interface{}. Prints req/s.
//	go_peer pending -n 10000 -url http://127.0.0.1:18080/sub/ID [-status URL]
//	    N held requests at once: RSS delta per request (VmRSS: goroutines, transport
//	    connections and their buffers), then the time to cancel all of them and see every
//	    goroutine return.
//	go_peer stream  -n RUNS -fmt ndjson|sse -url http://127.0.0.1:18080/stream.ndjson
//	    a long NDJSON or SSE body split with bufio.Scanner and decoded (stream.go).
//
// "Held" means: every request was written (httptrace WroteRequest) and, with -status (nginx
// nchan_stub_status), the server counts N more subscribers. Output lines:
//
//	RESULT go_cancel  n= p50_us= p99_us= max_us= min_us= mean_us=
//	RESULT go_seq     n= req_s= us_each=
//	RESULT go_pending n= rss_kib_each= cancel_all_ms= held_ms=
//	RESULT go_stream_<fmt> msgs= msg_s= mib_s= ms=
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "go_peer: "+format+"\n", args...)
	os.Exit(1)
}

func newClient(conns int) *http.Client {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        conns + 16,
		MaxIdleConnsPerHost: conns + 16, // default 2 would close connections between requests
		MaxConnsPerHost:     0,          // no cap: every held request needs its own connection
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr}
}

// VmRSS in KiB
func rssKiB() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "VmRSS:") {
			v, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return v
		}
	}
	return -1
}

// nchan_stub_status "subscribers: N", or -1
func subscribers(statusURL string) int64 {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(statusURL)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "subscribers:") {
			v, _ := strconv.ParseInt(strings.TrimSpace(line[len("subscribers:"):]), 10, 64)
			return v
		}
	}
	return -1
}

// held requests -----------------------------------------------------------------------------

type held struct {
	cancel context.CancelFunc
	done   chan error
}

// startHeld launches n GETs of url, each on its own goroutine with its own context, and
// returns once all are written and (with statusURL) counted by the server; bounded by 30 s.
func startHeld(client *http.Client, n int, url, statusURL string) []held {
	base := int64(0)
	if statusURL != "" {
		if base = subscribers(statusURL); base < 0 {
			die("cannot read %s", statusURL)
		}
	}
	var wrote int64
	hs := make([]held, n)
	for i := range hs {
		ctx, cancel := context.WithCancel(context.Background())
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
			atomic.AddInt64(&wrote, 1)
		}}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), "GET", url, nil)
		if err != nil {
			die("%v", err)
		}
		done := make(chan error, 1)
		hs[i] = held{cancel, done}
		go func() {
			resp, err := client.Do(req)
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body) // a hold that ended: read it out
				resp.Body.Close()
				if err == nil {
					err = fmt.Errorf("request was answered (HTTP %d), not held", resp.StatusCode)
				}
			}
			done <- err
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for atomic.LoadInt64(&wrote) < int64(n) {
		if time.Now().After(deadline) {
			die("only %d of %d requests written", atomic.LoadInt64(&wrote), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if statusURL != "" {
		for {
			s := subscribers(statusURL)
			if s >= base+int64(n) {
				break
			}
			if time.Now().After(deadline) {
				die("server holds %d of %d", s-base, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for i := range hs { // none may have ended already
		select {
		case err := <-hs[i].done:
			die("request %d ended before cancel: %v", i, err)
		default:
		}
	}
	return hs
}

func pct(sorted []float64, p float64) float64 {
	k := int(p/100*float64(len(sorted)) + 0.999999)
	if k < 1 {
		k = 1
	}
	if k > len(sorted) {
		k = len(sorted)
	}
	return sorted[k-1]
}

func cmdCancel(n int, url, statusURL, samplesFile string, gap time.Duration) {
	client := newClient(n)
	hs := startHeld(client, n, url, statusURL)
	lat := make([]float64, n)
	for i := range hs {
		if gap > 0 {
			time.Sleep(gap) // lets the runtime go idle (threads parked) before each cancel
		}
		t0 := time.Now()
		hs[i].cancel()
		err := <-hs[i].done
		lat[i] = float64(time.Since(t0).Nanoseconds()) / 1e3
		if !errors.Is(err, context.Canceled) {
			die("request %d: expected context.Canceled, got %v", i, err)
		}
	}
	if samplesFile != "" {
		f, err := os.Create(samplesFile)
		if err != nil {
			die("%v", err)
		}
		w := bufio.NewWriter(f)
		for _, v := range lat {
			fmt.Fprintf(w, "%.1f\n", v)
		}
		w.Flush()
		f.Close()
	}
	sum := 0.0
	for _, v := range lat {
		sum += v
	}
	sort.Float64s(lat)
	fmt.Printf("RESULT go_cancel n=%d p50_us=%.0f p99_us=%.0f max_us=%.0f min_us=%.0f mean_us=%.0f\n",
		n, pct(lat, 50), pct(lat, 99), lat[n-1], lat[0], sum/float64(n))
}

func getJSON(client *http.Client, url string, newConns *int) (int, error) {
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		if !info.Reused {
			*newConns++
		}
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var v []interface{}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body) // drain (trailing newline) so the connection is reused
	return len(v), nil
}

func cmdSeq(n int, url string) {
	client := newClient(1)
	newConns := 0
	for i := 0; i < 20; i++ { // warm-up
		if _, err := getJSON(client, url, &newConns); err != nil {
			die("%s: %v", url, err)
		}
	}
	newConns = 0
	t0 := time.Now()
	items := 0
	for i := 0; i < n; i++ {
		k, err := getJSON(client, url, &newConns)
		if err != nil {
			die("request %d: %v", i, err)
		}
		items += k
	}
	secs := time.Since(t0).Seconds()
	fmt.Printf("RESULT go_seq n=%d req_s=%.0f us_each=%.1f items_each=%d secs=%.3f new_conns=%d\n",
		n, float64(n)/secs, secs*1e6/float64(n), items/n, secs, newConns)
}

func cmdPending(n int, url, statusURL string) {
	client := newClient(n)
	if statusURL != "" {
		subscribers(statusURL) // warm up the HTTP client code before the baseline
	}
	debug.FreeOSMemory()
	rss0 := rssKiB()
	t := time.Now()
	hs := startHeld(client, n, url, statusURL)
	heldMs := float64(time.Since(t).Microseconds()) / 1e3
	rssRaw := rssKiB() // includes garbage of the set-up, as much as GC left at that moment
	debug.FreeOSMemory()
	rss1 := rssKiB() // what the held requests keep alive

	t0 := time.Now()
	for i := range hs {
		hs[i].cancel()
	}
	canceled := 0
	for i := range hs {
		if errors.Is(<-hs[i].done, context.Canceled) {
			canceled++
		}
	}
	ms := float64(time.Since(t0).Microseconds()) / 1e3
	if canceled != n {
		die("%d of %d ended with context.Canceled", canceled, n)
	}
	fmt.Printf("RESULT go_pending n=%d rss_kib_each=%.1f cancel_all_ms=%.1f held_ms=%.0f rss_delta_kib=%d rss_kib_each_before_gc=%.1f\n",
		n, float64(rss1-rss0)/float64(n), ms, heldMs, rss1-rss0, float64(rssRaw-rss0)/float64(n))
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: go_peer cancel|seq|pending|stream -n N -url URL [-status URL] [-samples FILE]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	n := fs.Int("n", 1000, "number of requests")
	url := fs.String("url", "", "URL (a hold for cancel/pending, /small.json for seq)")
	status := fs.String("status", "", "nginx nchan_stub_status URL, to wait until the server holds all")
	samples := fs.String("samples", "", "cancel: write each latency (µs) to this file")
	gap := fs.Duration("gap", 0, "cancel: idle pause before each cancel (0: back to back)")
	format := fs.String("fmt", "ndjson", "stream: ndjson or sse")
	fs.Parse(os.Args[2:])
	if *url == "" || *n <= 0 {
		die("-url and a positive -n are required")
	}
	switch os.Args[1] {
	case "cancel":
		cmdCancel(*n, *url, *status, *samples, *gap)
	case "seq":
		cmdSeq(*n, *url)
	case "pending":
		cmdPending(*n, *url, *status)
	case "stream":
		cmdStream(*n, *url, *format)
	default:
		die("unknown subcommand %q", os.Args[1])
	}
}
