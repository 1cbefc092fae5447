package peerauth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// helloMagic opens a hello frame and names its version. A peer that sends
// anything else (an old node, a stray client) is refused before any
// further byte is read.
var helloMagic = []byte("FRYA\x01")

// A hello frame is helloMagic, then the cluster ID and the secret, each
// as one length byte and that many bytes.

// WriteHello sends the cluster's hello frame on a new connection. The
// dialing side writes it before anything else.
func (a *Auth) WriteHello(w io.Writer) error {
	b := make([]byte, 0, len(helloMagic)+2+len(a.id)+len(a.secret))
	b = append(b, helloMagic...)
	b = append(b, byte(len(a.id)))
	b = append(b, a.id...)
	b = append(b, byte(len(a.secret)))
	b = append(b, a.secret...)
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("send cluster hello: %w", err)
	}
	return nil
}

// ReadHello reads the hello frame a peer opened its connection with and
// checks it. A refusal is logged (rate-limited) with remote and via, the
// name of the port or protocol; the caller must then close the
// connection without serving it. The caller bounds the read with a
// deadline.
func (a *Auth) ReadHello(r io.Reader, via, remote string) error {
	err := a.readHello(r)
	if err != nil {
		a.refused(via, remote, err)
	}
	return err
}

func (a *Auth) readHello(r io.Reader) error {
	magic := make([]byte, len(helloMagic))
	if _, err := io.ReadFull(r, magic); err != nil {
		return fmt.Errorf("%w: read hello: %v", ErrMissing, err)
	}
	if !bytes.Equal(magic, helloMagic) {
		return fmt.Errorf("%w: connection did not open with a cluster hello", ErrMissing)
	}
	id, err := readField(r)
	if err != nil {
		return err
	}
	secret, err := readField(r)
	if err != nil {
		return err
	}
	return a.Check(id, secret)
}

func readField(r io.Reader) (string, error) {
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return "", fmt.Errorf("%w: truncated hello: %v", ErrMissing, err)
	}
	b := make([]byte, n[0])
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", fmt.Errorf("%w: truncated hello: %v", ErrMissing, err)
	}
	return string(b), nil
}
