package qemu

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// ErrQMP means QEMU's monitor answered with an error or an unreadable
// message.
var ErrQMP = errors.New("qemu: QMP")

// Monitor is a QMP (QEMU Machine Protocol) connection in command mode.
// It is not safe for concurrent use.
type Monitor struct {
	conn net.Conn
	r    *bufio.Reader
}

// QMPMessage is one JSON message from QEMU: a greeting, a command's
// return value, an error or an asynchronous event.
type QMPMessage struct {
	Greeting json.RawMessage `json:"QMP,omitempty"`
	Return   json.RawMessage `json:"return,omitempty"`
	Error    *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error,omitempty"`
	Event string `json:"event,omitempty"`
}

// ParseQMP decodes one line sent by QEMU and checks it is one of the
// known message kinds.
func ParseQMP(line []byte) (QMPMessage, error) {
	var m QMPMessage
	if err := json.Unmarshal(line, &m); err != nil {
		return QMPMessage{}, fmt.Errorf("%w: bad message %.80q: %v", ErrQMP, line, err)
	}
	if m.Greeting == nil && m.Return == nil && m.Error == nil && m.Event == "" {
		return QMPMessage{}, fmt.Errorf("%w: unknown message %.80q", ErrQMP, line)
	}
	return m, nil
}

// DialQMP connects to the QMP socket at path, reads the greeting and
// enters command mode.
func DialQMP(path string) (*Monitor, error) {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, err
	}
	m := &Monitor{conn: c, r: bufio.NewReader(c)}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg, err := m.read()
	if err != nil {
		c.Close()
		return nil, err
	}
	if msg.Greeting == nil {
		c.Close()
		return nil, fmt.Errorf("%w: no greeting from %s", ErrQMP, path)
	}
	if _, err := m.Execute("qmp_capabilities"); err != nil {
		c.Close()
		return nil, err
	}
	return m, nil
}

func (m *Monitor) read() (QMPMessage, error) {
	line, err := m.r.ReadBytes('\n')
	if err != nil {
		return QMPMessage{}, err
	}
	return ParseQMP(line)
}

// Execute runs a QMP command without arguments and returns its return
// value, skipping events that arrive in between.
func (m *Monitor) Execute(command string) (json.RawMessage, error) {
	b, _ := json.Marshal(map[string]string{"execute": command})
	m.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := m.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("%w: send %s: %v", ErrQMP, command, err)
	}
	for {
		msg, err := m.read()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", command, err)
		}
		switch {
		case msg.Error != nil:
			return nil, fmt.Errorf("%w: %s: %s: %s", ErrQMP, command, msg.Error.Class, msg.Error.Desc)
		case msg.Return != nil:
			return msg.Return, nil
		}
	}
}

// Close closes the connection.
func (m *Monitor) Close() error { return m.conn.Close() }
