package live

import (
	"github.com/prometheus/client_golang/prometheus"
)

// The metrics at /metrics, computed from the view when scraped.
var (
	descMachines = prometheus.NewDesc("herd_machines", "Machines by state (waiting, booting, registered, receiving, writing, verified, local, ko, discovered).", []string{"state"}, nil)
	descWritten  = prometheus.NewDesc("herd_node_written_bytes", "Bytes a node wrote in the current chain.", []string{"id", "name"}, nil)
	descNodeRate = prometheus.NewDesc("herd_node_rate_bytes_per_second", "A node's write rate now.", []string{"id", "name"}, nil)
	descSent     = prometheus.NewDesc("herd_sent_bytes", "Bytes the source sent in the current chain.", nil, nil)
	descTotal    = prometheus.NewDesc("herd_total_bytes", "Bytes the current chain sends in all (-1: unknown).", nil, nil)
	descRate     = prometheus.NewDesc("herd_chain_rate_bytes_per_second", "The chain's rate now.", nil, nil)
	descFailures = prometheus.NewDesc("herd_failures_total", "Machines that failed, by class of reason (verify, dead, unreachable, slow, disk, power, agent, other).", []string{"reason"}, nil)
	descBypass   = prometheus.NewDesc("herd_bypasses_total", "Failed nodes the chain went around.", nil, nil)
	descMoves    = prometheus.NewDesc("herd_moves_total", "Slow nodes moved to the tail of the chain.", nil, nil)
	descRejoins  = prometheus.NewDesc("herd_rejoins_total", "Failed nodes that came back.", nil, nil)
	descRequests = prometheus.NewDesc("herd_pxe_requests_total", "Requests the PXE services answered, by service (dhcp, tftp, http) and outcome (ok, error).", []string{"service", "outcome"}, nil)
	descDuration = prometheus.NewDesc("herd_session_seconds", "How long the session has run (or ran).", nil, nil)
	descRunning  = prometheus.NewDesc("herd_session_running", "1 while the session runs, 0 once it ended.", nil, nil)
)

// collector reads a hub's view on every scrape.
type collector struct{ h *Hub }

// Describe sends every metric's description.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMachines, descWritten, descNodeRate, descSent, descTotal, descRate, descFailures,
		descBypass, descMoves, descRejoins, descRequests, descDuration, descRunning} {
		ch <- d
	}
}

// Collect sends every metric's value now.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	v := c.h.View()
	for _, s := range States {
		ch <- prometheus.MustNewConstMetric(descMachines, prometheus.GaugeValue, float64(v.Counts[s]), s)
	}
	for _, m := range v.Machines {
		if m.Addr == "" && m.Bytes == 0 {
			continue
		}
		ch <- prometheus.MustNewConstMetric(descWritten, prometheus.GaugeValue, float64(m.Bytes), m.ID, m.Name)
		ch <- prometheus.MustNewConstMetric(descNodeRate, prometheus.GaugeValue, m.Rate, m.ID, m.Name)
	}
	ch <- prometheus.MustNewConstMetric(descSent, prometheus.GaugeValue, float64(v.Sent))
	ch <- prometheus.MustNewConstMetric(descTotal, prometheus.GaugeValue, float64(v.Total))
	ch <- prometheus.MustNewConstMetric(descRate, prometheus.GaugeValue, v.Rate)
	byClass := map[string]int{}
	for _, f := range v.Failures {
		byClass[reasonClass(f.Reason)]++
	}
	for _, cl := range []string{"verify", "dead", "unreachable", "slow", "disk", "power", "agent", "other"} {
		ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(byClass[cl]), cl)
	}
	ch <- prometheus.MustNewConstMetric(descBypass, prometheus.CounterValue, float64(v.Bypasses))
	ch <- prometheus.MustNewConstMetric(descMoves, prometheus.CounterValue, float64(v.Moves))
	ch <- prometheus.MustNewConstMetric(descRejoins, prometheus.CounterValue, float64(v.Rejoins))
	for k, n := range c.h.requestCounts() {
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), k[0], k[1])
	}
	ch <- prometheus.MustNewConstMetric(descDuration, prometheus.GaugeValue, v.Elapsed)
	running := 0.0
	if v.Running {
		running = 1
	}
	ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, running)
}

// requestCounts copies the PXE request counts.
func (h *Hub) requestCounts() map[[2]string]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[[2]string]int64, len(h.requests))
	for k, v := range h.requests {
		out[k] = v
	}
	return out
}
