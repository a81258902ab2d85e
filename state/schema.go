package state

import (
	"fmt"
	"reflect"

	memdb "github.com/hashicorp/go-memdb"
)

// Tables and indexes of the in-memory store.
const (
	tableServices  = "services"
	tableInstances = "instances"
	tableNodes     = "nodes"
	tableEvents    = "events"
	tableMeta      = "meta"

	indexID          = "id"
	indexService     = "service"
	indexNode        = "node"
	indexInstance    = "instance"
	indexServiceSlot = "service_slot"
)

// metaIndexKey is the meta row holding the Raft index of the last applied
// change. It lives in memdb, not beside it, so a read transaction sees the
// index that matches the rows it reads.
const metaIndexKey = "index"

type metaRow struct {
	Key   string
	Value uint64
}

func schema() *memdb.DBSchema {
	str := func(field string, missingOK bool) *memdb.IndexSchema {
		return &memdb.IndexSchema{
			Name:         field,
			AllowMissing: missingOK,
			Indexer:      &memdb.StringFieldIndex{Field: field},
		}
	}
	named := func(name string, ix *memdb.IndexSchema) *memdb.IndexSchema {
		ix.Name = name
		return ix
	}
	primary := func(ix *memdb.IndexSchema) *memdb.IndexSchema {
		ix.Name = indexID
		ix.Unique = true
		return ix
	}
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableServices: {
			Name:    tableServices,
			Indexes: map[string]*memdb.IndexSchema{indexID: primary(str("Name", false))},
		},
		tableInstances: {
			Name: tableInstances,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:      primary(str("ID", false)),
				indexService: named(indexService, str("Service", false)),
				// Not placed yet: no node.
				indexNode: named(indexNode, str("Node", true)),
				// Not unique: while a slot is being replaced, the stopping
				// instance and its successor share it.
				indexServiceSlot: {
					Name: indexServiceSlot,
					Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
						&memdb.StringFieldIndex{Field: "Service"},
						&memdb.IntFieldIndex{Field: "Slot"},
					}},
				},
			},
		},
		tableNodes: {
			Name:    tableNodes,
			Indexes: map[string]*memdb.IndexSchema{indexID: primary(str("ID", false))},
		},
		tableEvents: {
			Name: tableEvents,
			Indexes: map[string]*memdb.IndexSchema{
				indexID:       {Name: indexID, Unique: true, Indexer: &memdb.UintFieldIndex{Field: "Seq"}},
				indexService:  named(indexService, str("Service", true)),
				indexInstance: named(indexInstance, str("Instance", true)),
			},
		},
		tableHistory:   historyTable(),
		tableTokens:    tokensTable(),
		tableAudit:     auditTable(),
		tableApprovals: approvalsTable(),
		tableSecrets:   secretsTable(),
		tableJoins:     joinsTable(),
		tableMeta: {
			Name:    tableMeta,
			Indexes: map[string]*memdb.IndexSchema{indexID: primary(str("Key", false))},
		},
	}}
}

func newMemDB() (*memdb.MemDB, error) {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		return nil, fmt.Errorf("state schema: %w", err)
	}
	return db, nil
}

// must turns a memdb error into a panic. Reads and writes fail only when a
// table or index name or an argument type does not match the schema, which is
// a bug in this package that the tests exercise, not a runtime condition.
func must[T any](v T, err error) T {
	check(err)
	return v
}

func check(err error) {
	if err != nil {
		panic(fmt.Sprintf("state: memdb use does not match schema: %v", err))
	}
}

// clone returns a deep copy of *v, so that callers of the read methods can
// modify what they get without touching the store's copy (memdb holds
// pointers). It copies by reflection so that fields added to the types later
// are copied too; time.Time is copied as a value.
func clone[T any](v *T) *T {
	if v == nil {
		return nil
	}
	out := new(T)
	deepCopy(reflect.ValueOf(out).Elem(), reflect.ValueOf(v).Elem())
	return out
}

func deepCopy(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		p := reflect.New(src.Elem().Type())
		deepCopy(p.Elem(), src.Elem())
		dst.Set(p)
	case reflect.Struct:
		dst.Set(src) // unexported fields (time.Time's) are copied as values
		for i := range src.NumField() {
			if f := dst.Field(i); f.CanSet() {
				deepCopy(f, src.Field(i))
			}
		}
	case reflect.Slice:
		if src.IsNil() {
			return
		}
		s := reflect.MakeSlice(src.Type(), src.Len(), src.Len())
		for i := range src.Len() {
			deepCopy(s.Index(i), src.Index(i))
		}
		dst.Set(s)
	case reflect.Map:
		if src.IsNil() {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), src.Len())
		it := src.MapRange()
		for it.Next() {
			v := reflect.New(src.Type().Elem()).Elem()
			deepCopy(v, it.Value())
			m.SetMapIndex(it.Key(), v)
		}
		dst.Set(m)
	default:
		dst.Set(src)
	}
}
