package s3lease

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// fakeS3 is an in-process bucket that implements just what lease objects
// need: GET, conditional PUT and a ListObjectsV2 page. The same tests run
// against versitygw in s3_test.go.
type fakeS3 struct {
	mu   sync.Mutex
	objs map[string][]byte
}

func etagOf(b []byte) string {
	h := md5.Sum(b)
	return `"` + hex.EncodeToString(h[:]) + `"`
}

func s3Error(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s</Message></Error>", code, code)
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	parts := strings.SplitN(strings.TrimPrefix(r.URL.Path, "/"), "/", 2)
	if len(parts) == 1 || parts[1] == "" {
		if r.Method == http.MethodGet && r.URL.Query().Get("list-type") == "2" {
			f.list(w, parts[0], r.URL.Query().Get("prefix"))
			return
		}
		s3Error(w, http.StatusNotImplemented, "NotImplemented")
		return
	}
	key := parts[1]
	cur, exists := f.objs[key]
	switch r.Method {
	case http.MethodGet:
		if !exists {
			s3Error(w, http.StatusNotFound, "NoSuchKey")
			return
		}
		w.Header().Set("ETag", etagOf(cur))
		w.Write(cur)
	case http.MethodPut:
		if im := r.Header.Get("If-Match"); im != "" && (!exists || im != etagOf(cur)) {
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			return
		}
		if r.Header.Get("If-None-Match") == "*" && exists {
			s3Error(w, http.StatusPreconditionFailed, "PreconditionFailed")
			return
		}
		b, err := io.ReadAll(r.Body)
		if err != nil {
			s3Error(w, http.StatusBadRequest, "IncompleteBody")
			return
		}
		f.objs[key] = b
		w.Header().Set("ETag", etagOf(b))
	default:
		s3Error(w, http.StatusNotImplemented, "NotImplemented")
	}
}

func (f *fakeS3) list(w http.ResponseWriter, bucket, prefix string) {
	type content struct {
		Key  string `xml:"Key"`
		Size int    `xml:"Size"`
	}
	var res struct {
		XMLName  xml.Name  `xml:"ListBucketResult"`
		Name     string    `xml:"Name"`
		Prefix   string    `xml:"Prefix"`
		KeyCount int       `xml:"KeyCount"`
		Contents []content `xml:"Contents"`
	}
	res.Name, res.Prefix = bucket, prefix
	for k, v := range f.objs {
		if strings.HasPrefix(k, prefix) {
			res.Contents = append(res.Contents, content{Key: k, Size: len(v)})
		}
	}
	sort.Slice(res.Contents, func(i, j int) bool { return res.Contents[i].Key < res.Contents[j].Key })
	res.KeyCount = len(res.Contents)
	w.Header().Set("Content-Type", "application/xml")
	xml.NewEncoder(w).Encode(res)
}

func newFakeBucket(t *testing.T) (*s3.Client, string) {
	srv := httptest.NewServer(&fakeS3{objs: map[string][]byte{}})
	t.Cleanup(srv.Close)
	c := s3.New(s3.Options{
		Region: "auto", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials:      credentials.NewStaticCredentialsProvider("k", "s", ""),
		RetryMaxAttempts: 1,
	})
	return c, "test"
}

func TestFakeS3(t *testing.T) {
	runSuite(t, newFakeBucket)
}
