package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/diaspora-shm/diaspora"
	"github.com/diaspora-shm/diaspora/driver"
)

// app holds the global options of one run and its standard streams.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	dyn          dynFlags
	driverName   string
	driverConfig string
	root, shm    string
	jsonOut      bool
}

// dynAnnotation lists, on a command, the dynamic flag groups it takes
// besides --driver.*.
const dynAnnotation = "diaspora-shmctl/dynamic-groups"

const rootLong = `diaspora-shmctl manages diaspora-shm: topics under a root directory, the
rings that hold their recent events in shared memory, and the processes
attached to them. It also produces and consumes events from the shell.

Options of the driver, of a topic and of its plug-ins follow the conventions
of the C++ diaspora-ctl:

  --driver NAME                 the driver (default "shm")
  --driver.<key> <value>        a driver option, e.g. --driver.root_path /data/ds
  --driver-config FILE          driver options from a JSON object
  --topic.<key> <value>         a topic option (topic create)
  --validator.<key> <value>     likewise --serializer.<key>, --partition-selector.<key>

Dotted keys nest: --validator.schema.type object gives {"schema":{"type":"object"}}.
Values that read as a JSON number, true, false or null are typed; anything else
is a string. Command-line values override values from a config file.

The shm driver's options are root_path (default $DIASPORA_ROOT, else
$XDG_STATE_HOME/diaspora-shm, else ~/.local/state/diaspora-shm) and shm_path
(default /dev/shm); --root and --shm are short for them.

Errors are one line on stderr, and the exit status is not zero; failing to
write standard output is an error too. A reader that closes standard output
early (| head) is not: the command stops printing and exits with status 0
(consume also stops, after acknowledging what it wrote with --ack; produce
still stores all its input). Warnings of the library (say, the archiver
cutting a torn log tail) are one line each on stderr too, starting
"diaspora-shmctl: warning: "; they do not change the exit status.`

const rootExample = `  diaspora-shmctl topic create --name sim --topic.num_partitions 4 --topic.ring_size 16MiB
  seq 1000 | diaspora-shmctl produce sim --format json
  diaspora-shmctl consume sim --name ana --ack
  diaspora-shmctl ring ls
  diaspora-shmctl --root /tmp/ds topic list -v`

// execute builds the command tree and runs args through it.
func (a *app) execute(args []string) error {
	rest, dyn, err := extractDynFlags(args)
	if err != nil {
		return err
	}
	a.dyn = dyn
	root := a.newRootCmd()
	root.SetArgs(rest)
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	_, err = root.ExecuteC()
	return err
}

func (a *app) newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           progName,
		Short:         "Manage diaspora-shm topics, rings and events",
		Long:          rootLong,
		Example:       rootExample,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return a.checkDynFlags(cmd)
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	pf := root.PersistentFlags()
	pf.StringVar(&a.driverName, "driver", driver.Name, "the driver to use")
	pf.StringVar(&a.driverConfig, "driver-config", "", "a JSON `file` with the driver's options")
	pf.StringVar(&a.root, "root", "", "the root `path` of the topics (short for --driver.root_path)")
	pf.StringVar(&a.shm, "shm", "", "the `directory` of the rings (short for --driver.shm_path)")
	pf.BoolVar(&a.jsonOut, "json", false, "print JSON instead of a table")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return err })

	root.AddCommand(a.newTopicCmd(), a.newRingCmd(), a.newProduceCmd(), a.newConsumeCmd(), a.newForwardCmd())
	return root
}

// groupCmd is a command that only holds subcommands.
func groupCmd(use, short, long, example string) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Short:   short,
		Long:    long,
		Example: example,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			var names []string
			for _, c := range cmd.Commands() {
				if c.IsAvailableCommand() {
					names = append(names, c.Name())
				}
			}
			return fmt.Errorf("unknown command %q for %q (known: %s)", args[0], cmd.CommandPath(), strings.Join(names, ", "))
		},
	}
}

// checkDynFlags refuses a dynamic flag the command does not take.
func (a *app) checkDynFlags(cmd *cobra.Command) error {
	allowed := map[string]bool{"driver": true}
	for _, g := range strings.Split(cmd.Annotations[dynAnnotation], ",") {
		allowed[g] = true
	}
	for _, f := range a.dyn {
		if !allowed[f.Group] {
			return fmt.Errorf("flag %s does not apply to %q", f.Arg, cmd.CommandPath())
		}
	}
	return nil
}

// driverOptions are the driver's options: --driver-config, then --driver.*,
// then --root and --shm.
func (a *app) driverOptions() (diaspora.Metadata, error) {
	m, err := groupConfig(a.dyn, "driver", a.driverConfig)
	if err != nil {
		return diaspora.Metadata{}, err
	}
	if a.root != "" {
		m["root_path"] = a.root
	}
	if a.shm != "" {
		m["shm_path"] = a.shm
	}
	return diaspora.MetadataOf(m)
}

// openDriver opens the driver chosen with --driver.
func (a *app) openDriver() (diaspora.Driver, error) {
	md, err := a.driverOptions()
	if err != nil {
		return diaspora.Driver{}, err
	}
	return diaspora.NewDriver(a.driverName, md)
}

// openTopic opens the driver and one of its topics; the caller closes the
// driver.
func (a *app) openTopic(name string) (diaspora.Driver, diaspora.TopicHandle, error) {
	d, err := a.openDriver()
	if err != nil {
		return d, diaspora.TopicHandle{}, err
	}
	t, err := d.OpenTopic(name)
	if err != nil {
		d.Close()
		return diaspora.Driver{}, t, err
	}
	return d, t, nil
}

// openShm opens the shm driver itself, for what only it can do.
func (a *app) openShm(what string) (*driver.Driver, error) {
	if a.driverName != driver.Name {
		return nil, fmt.Errorf("%s works with the %q driver only, not %q", what, driver.Name, a.driverName)
	}
	md, err := a.driverOptions()
	if err != nil {
		return nil, err
	}
	return driver.Open(md)
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	text, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(a.stdout, "%s\n", text)
	return err
}

// stderrIsTerminal says whether progress should be shown.
func (a *app) stderrIsTerminal() bool {
	f, ok := a.stderr.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
