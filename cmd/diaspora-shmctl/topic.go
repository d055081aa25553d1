package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
)

func (a *app) newTopicCmd() *cobra.Command {
	cmd := groupCmd("topic", "Create, list, inspect, complete and delete topics",
		"Topics live under the driver's root path; these commands manage them.",
		`  diaspora-shmctl topic create --name sim --topic.num_partitions 2
  diaspora-shmctl topic list -v
  diaspora-shmctl topic info sim
  diaspora-shmctl topic complete sim
  diaspora-shmctl topic delete sim`)
	cmd.AddCommand(a.newTopicCreateCmd(), a.newTopicListCmd(), a.newTopicInfoCmd(),
		a.newTopicDeleteCmd(), a.newTopicCompleteCmd())
	return cmd
}

// pluginFlags are --<kind> NAME and --<kind>-config FILE of one plug-in.
type pluginFlags struct {
	group      string // "validator", "serializer", "partition-selector"
	typeName   string
	configFile string
}

// config is the plug-in's config object; given is false when nothing was
// said about the plug-in, so the driver's default applies.
func (p pluginFlags) config(dyn dynFlags) (md diaspora.Metadata, given bool, err error) {
	flags := dyn.group(p.group)
	if p.typeName == "" && p.configFile == "" && len(flags) == 0 {
		return diaspora.Metadata{}, false, nil
	}
	m, err := groupConfig(dyn, p.group, p.configFile)
	if err != nil {
		return md, true, err
	}
	if p.typeName != "" {
		if over, _ := flags.tree(); over["type"] != nil && over["type"] != p.typeName {
			return md, true, fmt.Errorf("--%s %q and --%s.type %v disagree", p.group, p.typeName, p.group, over["type"])
		}
		m["type"] = p.typeName
	}
	md, err = diaspora.MetadataOf(m)
	return md, true, err
}

func (a *app) newTopicCreateCmd() *cobra.Command {
	var (
		name        string
		topicConfig string
		plugins     = []*pluginFlags{{group: "validator"}, {group: "serializer"}, {group: "partition-selector"}}
	)
	cmd := &cobra.Command{
		Use:   "create --name TOPIC [options]",
		Short: "Create a topic",
		Long: `Create a topic under the driver's root path.

Topic options (--topic.<key> <value>, or a JSON object in --topic-config) of the
shm driver:
  num_partitions   number of partitions (default 1)
  ring_size        bytes of each partition's ring in shared memory: a number or
                   a size such as "16MiB" (default 64MiB, 64KiB to 1GiB)
  durability       none | async | sync (default async)
  segment_size     bytes of a log segment (default 8MiB)
  retention_bytes  log bytes kept per partition (default: all)
  retention_age    age of log segments kept, such as "24h" (default: all)
  reader_slots     consumers attached to a ring at once (default 64)
  mode             file mode of the topic's files, such as "0640" (default "0600")
  push_timeout     how long a push waits for space, such as "10s" (default 30s)

Plug-ins: --validator NAME, --serializer NAME and --partition-selector NAME pick
a registered type ("default"; validators also "schema"); their options are
--validator.<key> <value> and so on, or a JSON object in --validator-config
and so on.`,
		Example: `  diaspora-shmctl topic create --name sim
  diaspora-shmctl topic create --name sim --topic.num_partitions 4 --topic.ring_size 16MiB --topic.durability sync
  diaspora-shmctl topic create --name events --validator schema \
      --validator.schema.type object --validator.schema.required '["x"]'
  diaspora-shmctl topic create --name sim --topic-config topic.json --topic.num_partitions 8`,
		Args:        cobra.NoArgs,
		Annotations: map[string]string{dynAnnotation: "topic,validator,serializer,partition-selector"},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return errors.New("topic create: missing --name (the topic's name)")
			}
			opts, err := groupConfig(a.dyn, "topic", topicConfig)
			if err != nil {
				return err
			}
			optsMD, err := diaspora.MetadataOf(opts)
			if err != nil {
				return err
			}
			args := []diaspora.TopicArg{optsMD}
			for _, p := range plugins {
				md, given, err := p.config(a.dyn)
				if err != nil {
					return err
				}
				if !given {
					continue
				}
				var arg diaspora.TopicArg
				switch p.group {
				case "validator":
					arg, err = diaspora.ValidatorFromMetadata(md)
				case "serializer":
					arg, err = diaspora.SerializerFromMetadata(md)
				default:
					arg, err = diaspora.PartitionSelectorFromMetadata(md)
				}
				if err != nil {
					return fmt.Errorf("%s %s: %w", p.group, md.Dump(), err)
				}
				args = append(args, arg)
			}
			d, err := a.openDriver()
			if err != nil {
				return err
			}
			defer d.Close()
			return d.CreateTopic(name, args...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "the topic's `name` (required)")
	f.StringVar(&topicConfig, "topic-config", "", "a JSON `file` with the topic's options")
	for _, p := range plugins {
		f.StringVar(&p.typeName, p.group, "", "the "+p.group+"'s registered `type`")
		f.StringVar(&p.configFile, p.group+"-config", "", "a JSON `file` with the "+p.group+"'s config")
	}
	return cmd
}

func (a *app) newTopicListCmd() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the topics",
		Long: `List the topics of the root path, one name a line. With -v each name is
followed by the topic's information (options, plug-ins, id) as JSON; with
--json the whole list is one JSON object.`,
		Example: `  diaspora-shmctl topic list
  diaspora-shmctl topic list -v
  diaspora-shmctl --root /data/ds topic list --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := a.openDriver()
			if err != nil {
				return err
			}
			defer d.Close()
			topics, err := d.ListTopics()
			if err != nil {
				return err
			}
			if a.jsonOut {
				if topics == nil {
					topics = map[string]diaspora.Metadata{}
				}
				return a.printJSON(topics)
			}
			names := make([]string, 0, len(topics))
			for n := range topics {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				if verbose {
					fmt.Fprintf(a.stdout, "%s\t%s\n", n, topics[n].Dump())
				} else {
					fmt.Fprintln(a.stdout, n)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "add each topic's information as JSON")
	return cmd
}

// topicInfo returns what the driver says of one topic.
func (a *app) topicInfo(name string) (diaspora.Metadata, error) {
	if a.driverName == driver.Name {
		d, err := a.openShm("topic info")
		if err != nil {
			return diaspora.Metadata{}, err
		}
		defer d.Close()
		return driver.TopicInfo(d.RootPath(), name)
	}
	d, err := a.openDriver()
	if err != nil {
		return diaspora.Metadata{}, err
	}
	defer d.Close()
	topics, err := d.ListTopics()
	if err != nil {
		return diaspora.Metadata{}, err
	}
	info, ok := topics[name]
	if !ok {
		return diaspora.Metadata{}, fmt.Errorf("topic %q: %w", name, diaspora.ErrTopicNotFound)
	}
	return info, nil
}

func (a *app) newTopicInfoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "info TOPIC",
		Short: "Show a topic's options, plug-ins and state as JSON",
		Long: `Show a topic's effective options, its validator, serializer and partition
selector configs, its id, creation time and whether it is complete, as JSON.`,
		Example: `  diaspora-shmctl topic info sim`,
		Args:    exactArgs(1, "TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := a.topicInfo(args[0])
			if err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(info.Bytes(), &v); err != nil {
				return err
			}
			return a.printJSON(v)
		},
	}
}

func (a *app) newTopicDeleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete TOPIC",
		Short: "Delete a topic, its log and its rings",
		Long: `Delete a topic: its directory under the root path (log, stored consumer
positions) and its rings in shared memory. It refuses while a live process is
attached to one of the topic's rings, unless --force is given.`,
		Example: `  diaspora-shmctl topic delete sim
  diaspora-shmctl topic delete sim --force`,
		Args: exactArgs(1, "TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := a.openShm("topic delete")
			if err != nil {
				return err
			}
			defer d.Close()
			return driver.DeleteTopic(d, args[0], force)
		},
	}
	cmd.Flags().BoolVar(&force, "force", false, "delete even while processes are attached")
	return cmd
}

func (a *app) newTopicCompleteCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "complete TOPIC",
		Short: "Mark a topic as complete (end of stream)",
		Long: `Mark a topic as complete: a consumer that has read every event of a
partition then ends instead of waiting for more.`,
		Example: `  diaspora-shmctl topic complete sim`,
		Args:    exactArgs(1, "TOPIC"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, t, err := a.openTopic(args[0])
			if err != nil {
				return err
			}
			if err := t.MarkAsComplete(); err != nil {
				d.Close()
				return err
			}
			return d.Close()
		},
	}
}

// exactArgs is cobra.ExactArgs with a message naming what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		path := strings.TrimPrefix(cmd.CommandPath(), progName+" ")
		if len(args) < n {
			return fmt.Errorf("%s: missing %s", path, what)
		}
		if len(args) > n {
			return fmt.Errorf("%s: too many arguments (want %s, got %q)", path, what, args)
		}
		return nil
	}
}
