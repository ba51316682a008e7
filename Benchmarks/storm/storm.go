// Reconnect storm: every socket of one big room drops at once and reconnects at once with
// `last_seq`, while messages keep flowing. Checks that every socket ends with exactly the
// room's message id sequence (no gap, no duplicate, in order) and reports how long the storm
// took to settle and the servers' peak RSS. Run by scripts/bench-storm.sh, which starts the
// database and the instances; this program only talks HTTP and WebSocket to them.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

var (
	bases     = flag.String("bases", "http://127.0.0.1:8000", "instance base URLs, comma separated: sockets are spread over them, posts go to the first")
	nUsers    = flag.Int("users", 50, "room members (sockets cycle through them)")
	nSockets  = flag.Int("sockets", 5000, "sockets in the room")
	rate      = flag.Int("rate", 50, "messages posted per second, before, during and after the storm")
	before    = flag.Duration("before", 3*time.Second, "posting before the storm")
	after     = flag.Duration("after", 5*time.Second, "posting after the storm's reconnects are all open")
	dialConc  = flag.Int("dial-concurrency", 1000, "reconnects in flight at once")
	pids      = flag.String("pids", "", "server pids, comma separated, for RSS")
	settleMax = flag.Duration("settle-timeout", 120*time.Second, "give up waiting for sockets to catch up after this")
)

type user struct {
	ID    int64
	Token string
}

type socket struct {
	user    user
	base    string
	mu      sync.Mutex
	conn    *websocket.Conn
	ids     []int64
	lastSeq int64
	resyncs int
	done    chan struct{}
}

type frame struct {
	Type      string `json:"type"`
	MessageID int64  `json:"message_id"`
	Seq       *int64 `json:"seq"`
}

func main() {
	flag.Parse()
	instances := strings.Split(*bases, ",")
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	run := strconv.FormatInt(time.Now().UnixNano()%1_000_000_000, 36)

	users := make([]user, *nUsers)
	parallel(*nUsers, 16, func(i int) {
		name := fmt.Sprintf("storm-%s-%d", run, i)
		body := map[string]any{"user_name": name, "password": "storm-password"}
		post(client, instances[0]+"/auth/register", "", body, 201)
		var login struct {
			AccessToken string `json:"access_token"`
			UserID      int64  `json:"user_id"`
		}
		decode(post(client, instances[0]+"/auth/login", "", body, 200), &login)
		users[i] = user{login.UserID, login.AccessToken}
	})
	ids := []int64{}
	for _, u := range users[1:] {
		ids = append(ids, u.ID)
	}
	var room struct {
		RoomID int64 `json:"room_id"`
	}
	decode(post(client, instances[0]+"/chat/rooms/", users[0].Token, map[string]any{
		"room_name": "storm " + run, "room_type": "group", "participant_ids": ids, "max_participants": *nUsers,
	}, 201), &room)

	sockets := make([]*socket, *nSockets)
	for i := range sockets {
		sockets[i] = &socket{user: users[i%len(users)], base: instances[i%len(instances)]}
	}
	t0 := time.Now()
	parallel(len(sockets), 200, func(i int) { sockets[i].open(room.RoomID, false) })
	logf("%d sockets open in %.1f s", len(sockets), time.Since(t0).Seconds())
	time.Sleep(2 * time.Second) // presence frames settle
	rssIdle := rss()

	var posted []int64
	var postedMu sync.Mutex
	stop := make(chan struct{})
	posterDone := make(chan struct{})
	go func() {
		defer close(posterDone)
		tick := time.NewTicker(time.Second / time.Duration(*rate))
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			var m struct {
				MessageID int64 `json:"message_id"`
			}
			decode(post(client, fmt.Sprintf("%s/chat/rooms/%d/messages/", instances[0], room.RoomID), users[n%len(users)].Token,
				map[string]any{"message_content": fmt.Sprintf("storm message %d", n)}, 201), &m)
			postedMu.Lock()
			posted = append(posted, m.MessageID)
			postedMu.Unlock()
		}
	}()
	time.Sleep(*before)

	// The storm: every connection drops at once (no close frame, as when a network
	// flaps), then every socket reconnects at once with the last seq it saw.
	stormStart := time.Now()
	for _, s := range sockets {
		s.drop()
	}
	var reconnectFailures int64
	parallel(len(sockets), *dialConc, func(i int) {
		if !sockets[i].open(room.RoomID, true) {
			atomic.AddInt64(&reconnectFailures, 1)
		}
	})
	reconnected := time.Since(stormStart)
	logf("%d sockets reconnected in %.2f s (%d failed)", len(sockets), reconnected.Seconds(), reconnectFailures)
	// Settled: every socket has every message posted up to the moment the last reconnect
	// was open (what the storm made it miss, caught up, and what came meanwhile).
	postedMu.Lock()
	mark := posted[len(posted)-1]
	postedMu.Unlock()
	waitUntilAllHave(sockets, mark, *settleMax)
	settled := time.Since(stormStart)
	rssPeak := rss()
	time.Sleep(*after)
	close(stop)
	<-posterDone
	postedMu.Lock()
	want := append([]int64(nil), posted...)
	postedMu.Unlock()
	waitUntilAllHave(sockets, want[len(want)-1], *settleMax)

	exact, wrong, resyncs := 0, 0, 0
	var sample string
	for _, s := range sockets {
		s.mu.Lock()
		resyncs += s.resyncs
		if equal(s.ids, want) {
			exact++
		} else {
			wrong++
			if sample == "" {
				sample = describe(s.ids, want)
			}
		}
		s.mu.Unlock()
	}
	for _, s := range sockets {
		s.drop()
	}
	result := map[string]any{
		"sockets": len(sockets), "users": len(users), "instances": len(instances), "rate_per_s": *rate,
		"messages": len(want), "reconnect_s": round(reconnected.Seconds()), "reconnect_failures": reconnectFailures,
		"settle_s": round(settled.Seconds()), "sockets_exact": exact, "sockets_wrong": wrong, "resync_required": resyncs,
		"rss_idle": rssIdle, "rss_after": rssPeak, "first_wrong": sample,
	}
	out, _ := json.MarshalIndent(result, "", "  ")
	fmt.Println(string(out))
	if wrong > 0 || reconnectFailures > 0 {
		os.Exit(1)
	}
}

// waitUntilAllHave returns once every socket has received message `id` (or after `limit`).
func waitUntilAllHave(sockets []*socket, id int64, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for {
		behind := 0
		for _, s := range sockets {
			s.mu.Lock()
			if len(s.ids) == 0 || s.ids[len(s.ids)-1] < id {
				behind++
			}
			s.mu.Unlock()
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			logf("%d sockets still without message %d after %s", behind, id, limit)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// open connects (with last_seq when resuming) and starts the reader; false on failure.
func (s *socket) open(roomID int64, resume bool) bool {
	u, _ := url.Parse(strings.Replace(s.base, "http", "ws", 1) + fmt.Sprintf("/chat/ws/%d", roomID))
	q := url.Values{"token": {s.user.Token}}
	s.mu.Lock()
	if resume {
		q.Set("last_seq", strconv.FormatInt(s.lastSeq, 10))
	}
	s.mu.Unlock()
	u.RawQuery = q.Encode()
	dialer := websocket.Dialer{HandshakeTimeout: 60 * time.Second, ReadBufferSize: 4096, WriteBufferSize: 1024}
	for attempt := 0; attempt < 5; attempt++ {
		conn, _, err := dialer.Dial(u.String(), nil)
		if err != nil {
			time.Sleep(time.Duration(100*(attempt+1)) * time.Millisecond)
			continue
		}
		s.mu.Lock()
		s.conn = conn
		s.done = make(chan struct{})
		done := s.done
		s.mu.Unlock()
		go s.read(conn, done)
		return true
	}
	return false
}

func (s *socket) read(conn *websocket.Conn, done chan struct{}) {
	defer close(done)
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		var f frame
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		s.mu.Lock()
		if f.Seq != nil && *f.Seq > s.lastSeq {
			s.lastSeq = *f.Seq
		}
		switch f.Type {
		case "message":
			s.ids = append(s.ids, f.MessageID)
		case "resync_required":
			s.resyncs++
		}
		s.mu.Unlock()
	}
}

// drop closes the TCP connection without a close frame and waits for the reader to stop,
// so nothing it reads afterwards is counted.
func (s *socket) drop() {
	s.mu.Lock()
	conn, done := s.conn, s.done
	s.mu.Unlock()
	if conn == nil {
		return
	}
	conn.UnderlyingConn().Close()
	<-done
}

func parallel(n, width int, work func(int)) {
	sem := make(chan struct{}, width)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			work(i)
		}(i)
	}
	wg.Wait()
}

func post(client *http.Client, target, token string, body any, status int) []byte {
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", target, bytes.NewReader(data))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		fatalf("POST %s: %v", target, err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		fatalf("POST %s: %d %s", target, resp.StatusCode, answer)
	}
	return answer
}

func decode(data []byte, into any) {
	if err := json.Unmarshal(data, into); err != nil {
		fatalf("decoding %s: %v", data, err)
	}
}

// rss reads each server's current and peak resident set (kB) from /proc.
func rss() []string {
	var out []string
	for _, pid := range strings.Split(*pids, ",") {
		if pid == "" {
			continue
		}
		status, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			continue
		}
		fields := map[string]string{}
		for _, line := range strings.Split(string(status), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && (k == "VmRSS" || k == "VmHWM") {
				fields[k] = strings.TrimSpace(v)
			}
		}
		out = append(out, fmt.Sprintf("pid %s: rss %s, peak %s", pid, fields["VmRSS"], fields["VmHWM"]))
	}
	sort.Strings(out)
	return out
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func describe(got, want []int64) string {
	for i := range want {
		if i >= len(got) {
			return fmt.Sprintf("got %d of %d messages; first missing id %d", len(got), len(want), want[i])
		}
		if got[i] != want[i] {
			return fmt.Sprintf("at position %d got id %d, want %d", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("got %d messages, want %d (extra after the last)", len(got), len(want))
}

func round(x float64) float64 { return float64(int(x*100+0.5)) / 100 }

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "storm: "+format+"\n", args...) }

func fatalf(format string, args ...any) {
	logf(format, args...)
	os.Exit(2)
}
