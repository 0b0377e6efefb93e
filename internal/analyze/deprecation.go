package analyze

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
)

// removedGroups are API groups whose kinds Istio removed: resources of
// them are not served by any Istio that zmesh follows.
var removedGroups = map[string]bool{"rbac.istio.io": true, "authentication.istio.io": true, "config.istio.io": true}

// analyzeDeprecated is Istio's IST0002: a set field (or enum value) that
// the resource's schema marks deprecated, found from the schema itself
// rather than a hand-kept list; and resources of removed kinds.
func analyzeDeprecated(c *context) {
	for _, r := range c.in.Snapshot.All() {
		if r.Spec == nil {
			continue
		}
		for _, f := range deprecatedFields(r.Spec) {
			c.reportOn(Deprecated, r, f+" is deprecated")
		}
	}
	for _, o := range c.in.Others {
		group, _, _ := strings.Cut(o.APIVersion, "/")
		if removedGroups[group] {
			c.report(Deprecated, resourceName(o.Kind, o.Namespace, o.Name), o.Source, fmt.Sprintf("Custom resource type %s %s is removed", group, o.Kind))
		}
	}
}

// deprecatedFields returns the paths of the deprecated fields and enum
// values set in m, e.g. "trafficPolicy.tls.mode".
func deprecatedFields(m proto.Message) []string {
	var out []string
	walkDeprecated(m.ProtoReflect(), "", &out, 0)
	return out
}

func walkDeprecated(m protoreflect.Message, prefix string, out *[]string, depth int) {
	if depth > 32 {
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		path := prefix + fd.JSONName()
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			*out = append(*out, path)
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				item := fmt.Sprintf("%s[%d]", path, i)
				if fd.Message() != nil {
					walkDeprecated(l.Get(i).Message(), item+".", out, depth+1)
				} else if fd.Enum() != nil {
					checkEnum(fd, l.Get(i).Enum(), item, out)
				}
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					walkDeprecated(mv.Message(), fmt.Sprintf("%s[%v].", path, k.Interface()), out, depth+1)
					return true
				})
			}
		case fd.Message() != nil:
			walkDeprecated(v.Message(), path+".", out, depth+1)
		case fd.Enum() != nil:
			checkEnum(fd, v.Enum(), path, out)
		}
		return true
	})
}

func checkEnum(fd protoreflect.FieldDescriptor, n protoreflect.EnumNumber, path string, out *[]string) {
	ev := fd.Enum().Values().ByNumber(n)
	if ev == nil {
		return
	}
	if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
		*out = append(*out, fmt.Sprintf("%s value %s", path, ev.Name()))
	}
}
